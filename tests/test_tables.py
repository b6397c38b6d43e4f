"""`wslbench tables` on fabricated run folders (table logic) and on one real tiny run."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from wslbench.cli import main
from wslbench.tables import aggregate, build_tables, collect_runs, latex_escape

METRICS = {  # (dataset, method, erase_depth) -> per-seed (cls_error, f1_pos, f1_neg, crf_pos, crf_neg, time)
    ("glas", "cam-avg", None): [(10.0, 0.60, 0.50, 0.62, 0.49, 600), (12.0, 0.64, 0.54, 0.66, 0.53, 660)],
    ("glas", "minmax", 4): [(4.0, 0.70, 0.80, 0.71, 0.81, 5400), (6.0, 0.72, 0.78, 0.73, 0.80, 5500), (5.0, 0.74, 0.79, 0.75, 0.79, 5300)],
    ("glas", "minmax", 0): [(8.0, 0.69, 0.70, 0.70, 0.71, 2940)],
    ("glas", "all-ones", None): [(None, 0.66, 0.0, None, None, 0)],
    ("glas", "unet", None): [(None, 0.90, 0.88, 0.91, 0.89, 900)],
    ("cub5", "cam-avg", None): [(30.0, 0.40, 0.70, 0.41, 0.72, 300)],
}


def fabricate(root, metrics=METRICS, unfinished=True):
    for (ds, method, depth), seeds in metrics.items():
        for k, (err, fp, fn, cp, cn, t) in enumerate(seeds):
            folder = f"{method}+noerase" if depth == 0 else method
            run = root / ds / folder / f"seed{k}"
            run.mkdir(parents=True)
            cfg = {"method": method, "dataset": ds, "seed": k, "tag": "noerase" if depth == 0 else None,
                   "model": {} if depth is None else {"erase_depth": depth}}
            (run / "config.yaml").write_text(yaml.safe_dump(cfg))
            ev = {"cls_error": err, "f1_pos": fp, "f1_neg": fn, "train_time_s": t, "epochs_run": 3}
            if cp is not None:
                ev.update(crf_f1_pos=cp, crf_f1_neg=cn)
            (run / "eval.json").write_text(json.dumps(ev))
            (run / "status.json").write_text(json.dumps({"state": "finished"}))
    if unfinished:  # a run that died: never a table row
        run = root / "glas" / "wildcat" / "seed0"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(yaml.safe_dump({"method": "wildcat", "dataset": "glas", "seed": 0}))
        (run / "status.json").write_text(json.dumps({"state": "running"}))


def cell(table, row, column):
    i = table.rows.index(row)
    cols = [f"{g} {c}" for g, cs in table.groups for c in cs]
    return table.cells[i][cols.index(column)]


def test_one_seed_shows_no_spread():
    """A cell of one seed has no sample std; "± 0.00" would read as a measured spread of zero."""
    one, two = aggregate([0.25]), aggregate([0.2, 0.3])
    assert one.std is None and one.text("markdown") == "0.25 (1)"
    assert one.text("latex") == r"0.25 {\scriptsize(1)}"
    assert two.text("markdown") == f"0.25 ± {np.std([0.2, 0.3], ddof=1):.2f} (2)" == "0.25 ± 0.07 (2)"


def test_mean_std_seeds_and_variants(tmp_path):
    fabricate(tmp_path)
    runs = collect_runs(tmp_path)
    assert len(runs) == 9 and "wildcat" not in set(runs["method"])
    t1, t2, t3, t4, t5, t6 = build_tables(runs)[:6]
    c = cell(t1, "Ours (min-max)", "GlaS Error (%)")
    assert (c.mean, c.n) == (pytest.approx(5.0), 3) and c.std == pytest.approx(np.std([4, 6, 5], ddof=1))
    c = cell(t2, "CAM-Avg", "GlaS F1+ (%)")
    assert c.mean == pytest.approx(62.0) and c.std == pytest.approx(np.std([60, 64], ddof=1))
    assert cell(t1, "All-ones", "GlaS Error (%)").text("markdown") == "n/a"
    assert cell(t1, "Full sup. (U-Net)", "GlaS Error (%)").text("markdown") == "n/a"  # it does not classify
    # erasing variants told apart by model.erase_depth
    assert cell(t3, "without erasing (u = 0)", "GlaS Error (%)").mean == pytest.approx(8.0)
    assert cell(t5, "with erasing (u > 0)", "GlaS Time (min)").mean == pytest.approx(5400 / 60)
    assert [g for g, _ in t4.groups] == ["GlaS"]  # no min-max run on CUB5: the column is left out
    t4 = build_tables(runs, full_layout=True)[3]  # the paper's layout keeps it: a visible dash, never a zero
    assert cell(t4, "with erasing (u > 0)", "CUB5 F1+ (%)").text("markdown") == "–"
    assert [g for g, _ in t4.groups] == ["GlaS", "CUB5", "CUB", "OxF"]


def test_bold_excludes_all_ones_and_unet_and_missing_is_dash(tmp_path):
    fabricate(tmp_path)
    t1, t2, *_ , t6 = build_tables(collect_runs(tmp_path))[:6]
    assert cell(t1, "Ours (min-max)", "GlaS Error (%)").bold and not cell(t1, "CAM-Avg", "GlaS Error (%)").bold
    # U-Net has the highest F1+ and All-ones a high one: neither is bold; min-max is
    assert not cell(t2, "Full sup. (U-Net)", "GlaS F1+ (%)").bold
    assert cell(t2, "Ours (min-max)", "GlaS F1+ (%)").bold
    assert cell(t2, "Ours (min-max)", "CUB5 F1+ (%)").n == 0
    assert "Deep MIL" not in t6.rows
    assert cell(t6, "CAM-Avg", "GlaS F1+ (%)").arrow == "up"  # 64 vs 62
    assert cell(t6, "CAM-Avg", "GlaS F1- (%)").arrow == "down"  # 51 vs 52


def test_cli_writes_balanced_latex_and_markdown(tmp_path):
    fabricate(tmp_path / "runs")
    res = CliRunner().invoke(main, ["tables", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "t"),
                                    "--format", "latex", "--format", "markdown", "--format", "csv"])
    assert res.exit_code == 0, res.output
    for k in range(1, 7):  # runs directly under the root: an experiment named after the root
        tex = (tmp_path / "t" / "runs" / f"table{k}.tex").read_text()
        assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 1
        assert r"\toprule" in tex and r"\bottomrule" in tex
        spec = re.search(r"\\begin\{tabular\}\{(l[c]+)\}", tex).group(1)
        body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0]
        for line in body.strip().splitlines():  # every row has as many cells as the column spec
            assert line.endswith(r"\\") and line.count("&") == len(spec) - 1
        assert tex.count("{") == tex.count("}")
        md = (tmp_path / "t" / "runs" / f"table{k}.md").read_text()
        rows = [ln for ln in md.splitlines() if ln.startswith("|")]
        assert len({ln.count("|") for ln in rows}) == 1
    assert re.search(r"62\.00 ± 2\.83 \[[\d.]+, [\d.]+\] \(2\)", (tmp_path / "t" / "runs" / "table2.md").read_text())


def test_tables_from_a_real_tiny_run(tiny, tmp_path):
    from wslbench.train import run

    run(tiny("cam-avg", epochs=1, extra=["train.max_steps_per_epoch=1"]), out=tmp_path / "runs")
    res = CliRunner().invoke(main, ["tables", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "t")])
    assert res.exit_code == 0 and "1 finished run" in res.output
    ev = json.loads((tmp_path / "runs" / "synthetic" / "cam-avg" / "seed0" / "eval.json").read_text())
    md = (tmp_path / "t" / "runs" / "table2.md").read_text()
    assert re.search(rf"\*\*{100 * ev['f1_pos']:.2f}\*\* \[[\d.]+, [\d.]+\] \(1\)", md)  # the only WSL row: best


def test_missing_runs_dir_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(main, ["tables", "--runs", str(tmp_path / "none")])
    assert res.exit_code == 2 and "no run folder" in res.output


def test_latex_parses_with_a_latex_parser_one_row_per_method(tmp_path):
    from pylatexenc.latexwalker import LatexEnvironmentNode, LatexWalker

    fabricate(tmp_path / "runs")
    CliRunner().invoke(main, ["tables", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "t")])

    def find(nodes, name):  # also inside groups and macro arguments (a wide tabular is in \resizebox)
        for n in nodes or []:
            if isinstance(n, LatexEnvironmentNode) and n.environmentname == name:
                return n
            args = getattr(getattr(n, "nodeargd", None), "argnlist", None) or []
            for inner in [getattr(n, "nodelist", None), *[[a] for a in args if a is not None]]:
                found = find(inner, name)
                if found is not None:
                    return found
        return None

    tables = build_tables(collect_runs(tmp_path / "runs"))
    for tab in tables:
        tex = (tmp_path / "t" / "runs" / f"table{tab.number}.tex").read_text()
        nodes, _, _ = LatexWalker(tex, tolerant_parsing=False).get_latex_nodes()  # raises on bad LaTeX
        tabular = find(nodes, "tabular")
        assert tabular is not None and find(nodes, "table") is not None
        body = tabular.latex_verbatim().split(r"\midrule")[1].split(r"\bottomrule")[0]
        names = [line.split("&")[0].strip() for line in body.strip().splitlines()]
        assert names == [latex_escape(n) for n in tab.rows]  # one row per method, in order
        groups = tabular.latex_verbatim().count(r"\multicolumn")
        datasets = {r["dataset"] for r in collect_runs(tmp_path / "runs").to_dict("records")}
        assert groups == len(tab.groups) and 1 <= len(tab.groups) <= len(datasets)


def test_recorded_runs_reproduce_results_tables_byte_for_byte(tmp_path, monkeypatch):
    """`wslbench tables --runs results/records` writes exactly the committed results/tables/."""
    from conftest import REPO

    monkeypatch.chdir(REPO)  # the tables name the root as given: results/records
    res = CliRunner().invoke(main, ["tables", "--runs", "results/records", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    committed = REPO / "results" / "tables"
    made = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    kept = sorted(p.relative_to(committed).as_posix() for p in committed.rglob("*") if p.is_file())
    assert made == kept and "cpu_scratch/table2.md" in made
    for rel in made:
        assert (tmp_path / rel).read_bytes() == (committed / rel).read_bytes(), rel




def test_caption_counts_images_left_out_for_an_undefined_dice(tmp_path):
    fabricate(tmp_path, unfinished=False)
    t2 = build_tables(collect_runs(tmp_path))[1]
    assert "both empty" not in t2.caption  # no such image: the caption stays as it was
    for k, n in ((0, 2), (1, 1)):  # CAM-Avg on GlaS: 2 images in seed 0, 1 in seed 1 had no foreground anywhere
        path = tmp_path / "glas" / "cam-avg" / f"seed{k}" / "eval.json"
        ev = json.loads(path.read_text())
        ev["n_empty_both"] = {"f1_pos": n, "f1_neg": 0}
        path.write_text(json.dumps(ev))
    runs = collect_runs(tmp_path)
    tables = build_tables(runs)
    assert "CAM-Avg GlaS F1+ (%): 3" in tables[1].caption and "F1- (%): " not in tables[1].caption
    assert "both empty" not in tables[0].caption  # classification error: no Dice
    assert "both empty" in tables[1].to_markdown() and "both empty" in tables[1].to_latex()


def test_caption_notes_name_a_cell_as_its_row_reads():
    """The empty-Dice and diverged-run notes name a variant as the table's row does, not by its key."""
    from wslbench.tables import cell_name

    assert cell_name("minmax+maskimage", "glas", {}) == "Ours, mask per image GlaS"
    assert cell_name("cam-max+big", "synthetic", {}) == "CAM-Max (big) Synthetic"
    assert cell_name("cam-avg", "glas", {"cam-avg": "CAM (renamed)"}) == "CAM (renamed) GlaS"


def test_glas_lite0_f1_neg_bolds_what_the_data_cannot_separate_from_the_best():
    """On the committed 30-epoch GlaS records: the best F1- row is bold; no reference row and no row
    with fewer seeds is; and every row that even a paired t-test on image means (which ignores the
    seeds' spread, so it separates more readily than the bootstrap) cannot tell from the best is
    bold. The caption states the level and the resamples."""
    from conftest import REPO
    from scipy import stats

    from wslbench.rows import display_name, row_info

    runs = collect_runs(REPO / "results" / "records", "glas_lite0")
    t2 = build_tables(runs)[1]
    j = [f"{g} {c}" for g, cs in t2.groups for c in cs].index("GlaS [paper] F1- (%)")
    own = runs[runs["path"].map(lambda p: "rescore" not in Path(p).parts) & (runs["variant"] != "minmax-noerase")]
    means = {v: pd.concat([pd.read_csv(Path(p) / "per_image.csv").set_index("id")["f1_neg"] for p in sub["path"]],
                          axis=1).mean(axis=1) for v, sub in own.groupby("variant")}
    cells = {v: t2.cells[t2.rows.index(display_name(v))][j] for v in means}
    contenders = [v for v in means if row_info(v).contender]
    best = max(contenders, key=lambda v: cells[v].mean)
    assert cells[best].bold and "5% level" in t2.caption and "2000 resamples" in t2.caption
    for v, c in cells.items():
        if not row_info(v).contender or c.short:
            assert not c.bold, v
        elif v != best and stats.ttest_rel(means[best], means[v]).pvalue > 0.05:
            assert c.bold, v
    assert sum(c.bold for c in cells.values()) < len(cells) - 2  # and it does separate some rows
