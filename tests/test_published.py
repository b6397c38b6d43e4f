"""Published values beside ours (wslbench.published): the data file, the table, the figure, on
fixture run folders whose numbers are checked against a hand computation."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from wslbench.cli import main
from wslbench.errors import DataError
from wslbench.published import (
    build_published,
    load_published,
    published_curves,
    reach,
    write_published,
)
from wslbench.runs import discover

THRESHOLDS = [0.0, 0.25, 0.5, 0.75, 1.0]
#: (experiment, dataset, folder, method, tag, seed) -> eval.json scores (fractions; cls_error in %) and
#: the threshold curves (F1+ and F1- per threshold, fractions)
RUNS = {
    ("exp_a", "glas", "cam-avg", "cam-avg", None, 0): {
        "cls_error": 0.0, "f1_pos": 0.30, "f1_neg": 0.60, "auc_f1_pos": 0.35, "auc_f1_neg": 0.55, "pxap": 0.70,
        "curve_pos": [0.66, 0.70, 0.45, 0.52, 0.10], "curve_neg": [0.00, 0.40, 0.60, 0.62, 0.64]},
    ("exp_a", "glas", "cam-avg", "cam-avg", None, 1): {
        "cls_error": 2.5, "f1_pos": 0.34, "f1_neg": 0.64, "auc_f1_pos": 0.37, "auc_f1_neg": 0.58, "pxap": 0.74,
        "curve_pos": [0.66, 0.72, 0.47, 0.54, 0.12], "curve_neg": [0.00, 0.42, 0.58, 0.60, 0.66]},
    ("exp_a", "glas", "cam-avg", "cam-avg", None, 2): {
        "cls_error": 1.25, "f1_pos": 0.26, "f1_neg": 0.65, "auc_f1_pos": 0.33, "auc_f1_neg": 0.57, "pxap": 0.69,
        "curve_pos": [0.66, 0.68, 0.43, 0.50, 0.08], "curve_neg": [0.00, 0.44, 0.62, 0.64, 0.65]},
    ("exp_a", "glas", "gradcam", "gradcam", None, 0): {
        "cls_error": 0.0, "f1_pos": 0.20, "f1_neg": 0.66, "auc_f1_pos": 0.27, "auc_f1_neg": 0.64, "pxap": 0.75,
        "curve_pos": [0.66, 0.40, 0.20, 0.05, 0.00], "curve_neg": [0.00, 0.60, 0.66, 0.65, 0.64]},
    # a tagged variant is another setup: never a published row's seed
    ("exp_a", "glas", "cam-avg+big", "cam-avg", "big", 0): {
        "cls_error": 50.0, "f1_pos": 0.99, "f1_neg": 0.99, "auc_f1_pos": 0.99, "auc_f1_neg": 0.99, "pxap": 0.99,
        "curve_pos": [0.99] * 5, "curve_neg": [0.99] * 5},
    # no published value: no row
    ("exp_a", "glas", "minmax", "minmax", None, 0): {
        "cls_error": 0.0, "f1_pos": 0.70, "f1_neg": 0.70, "auc_f1_pos": 0.6, "auc_f1_neg": 0.6, "pxap": 0.8,
        "curve_pos": [0.66, 0.7, 0.7, 0.6, 0.0], "curve_neg": [0.0, 0.5, 0.7, 0.7, 0.6]},
    # a data set without a published file: exp_b gets no published table
    ("exp_b", "synthetic", "cam-avg", "cam-avg", None, 0): {
        "cls_error": 0.0, "f1_pos": 0.5, "f1_neg": 0.5, "auc_f1_pos": 0.5, "auc_f1_neg": 0.5, "pxap": 0.5,
        "curve_pos": [0.5] * 5, "curve_neg": [0.5] * 5},
}
PUBLISHED = """method,metric,value,source
cam-avg,cls_error,0.00,"Paper A, Table I; repo a/b, file doc/t.png"
cam-avg,f1_pos,50.0,"Paper A, Table I; repo a/b, file doc/t.png"
cam-avg,f1_neg,17.88,"Paper A, Table I; repo a/b, file doc/t.png"
cam-avg,pxap,61.1,"Paper B & co, Table 1; repo c/d, file doc/p.png"
gradcam,f1_pos,66.30,"Paper A, Table I; repo a/b, file doc/t.png"
gradcam,f1_neg,21.30,"Paper A, Table I; repo a/b, file doc/t.png"
minmax-other,pxap,70.0,"Paper B & co, Table 1; repo c/d, file doc/p.png"
"""


def write_run(root, key, scores, rescore: bool = False):
    experiment, dataset, folder, method, tag, seed = key
    run = root / experiment / dataset / folder / f"seed{seed}"
    run.mkdir(parents=True)
    cfg = {"method": method, "dataset": dataset, "seed": seed, "tag": tag, "experiment": experiment, "model": {}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    ev = {k: v for k, v in scores.items() if not k.startswith("curve")}
    ev.update(threshold=0.5, protocol_label="paper", epochs_run=3, selection="val_error")
    (run / "eval.json").write_text(json.dumps(ev))
    (run / "status.json").write_text(json.dumps({"state": "finished"}))
    pd.DataFrame({"id": ["a", "b"], "label": [0, 1], "pred_label": [0, 1], "f1_pos": [scores["f1_pos"]] * 2,
                  "f1_neg": [scores["f1_neg"]] * 2}).to_csv(run / "per_image.csv", index=False)
    pd.DataFrame({"threshold": THRESHOLDS, "f1_pos": scores["curve_pos"], "f1_neg": scores["curve_neg"],
                  "precision": [0.5] * 5, "recall": [1.0] * 5}).to_csv(run / "threshold_curves.csv", index=False,
                                                                       float_format="%.4f")
    if rescore:  # the same maps under another protocol: another table column, not another seed
        again = run / "rescore" / "pixel_budget-1"
        again.mkdir(parents=True)
        (again / "config.yaml").write_text(yaml.safe_dump(cfg))
        (again / "eval.json").write_text(json.dumps({**ev, "f1_pos": 0.99, "protocol_label": "pixel budget (1/class)"}))
        (again / "status.json").write_text(json.dumps({"state": "finished"}))
        (again / "threshold_curves.csv").write_text((run / "threshold_curves.csv").read_text())
    return run


@pytest.fixture
def records(tmp_path):
    runs = tmp_path / "runs"
    for key, scores in RUNS.items():
        write_run(runs, key, scores, rescore=key == ("exp_a", "glas", "cam-avg", "cam-avg", None, 0))
    published = tmp_path / "published"
    published.mkdir()
    (published / "glas.csv").write_text(PUBLISHED)
    return runs, published


def scores_of(method, key, experiment="exp_a"):
    return [s[key] for (e, _, folder, m, tag, _), s in RUNS.items() if e == experiment and m == method and tag is None]


def expected(values, scale):
    v = np.asarray(values, dtype=float) * scale
    if v.size == 1:
        return f"{v[0]:.2f} (1)"
    return f"{v.mean():.2f} ± {v.std(ddof=1):.2f} ({v.size})"


def md_rows(text):
    """Method -> {column title: cell} of a published.md table."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return {cells[0]: dict(zip(header, cells)) for ln in lines[2:] if (cells := [c.strip() for c in ln.strip("|").split("|")])}


def test_table_matches_a_hand_computation_and_reruns_byte_identical(records, tmp_path):
    runs, published = records
    out = tmp_path / "tables"
    res = CliRunner().invoke(main, ["tables", "--runs", str(runs), "--out", str(out), "--published", str(published)])
    assert res.exit_code == 0, res.output
    md = (out / "exp_a" / "published.md").read_text()
    rows = md_rows(md)
    assert list(rows) == ["CAM-Avg", "Grad-CAM"]  # no tagged variant, no method without a published value
    cam = rows["CAM-Avg"]
    # published cells as written in the file
    assert (cam["Published Error (%)"], cam["Published F1+ (%)"], cam["Published F1- (%)"], cam["Published PxAP (%)"]) \
        == ("0.00", "50.0", "17.88", "61.1")
    # ours: numpy over the fixture values (3 seeds; the rescore folder and the tagged run left out)
    for column, key, scale in (("Ours Error (%)", "cls_error", 1), ("Ours F1+ (%)", "f1_pos", 100),
                               ("Ours F1- (%)", "f1_neg", 100), ("Ours AUC F1+ (%)", "auc_f1_pos", 100),
                               ("Ours AUC F1- (%)", "auc_f1_neg", 100), ("Ours PxAP (%)", "pxap", 100)):
        assert cam[column] == expected(scores_of("cam-avg", key), scale), column
    # τ: the mean curve over seeds is 66, 70, 45, 52, 10 (%); the largest τ with F1+ >= 50 is 0.75,
    # not the first crossing at 0.25
    mean_pos = np.mean([s for s in scores_of("cam-avg", "curve_pos")], axis=0) * 100
    mean_neg = np.mean([s for s in scores_of("cam-avg", "curve_neg")], axis=0) * 100
    k = max(i for i, v in enumerate(mean_pos) if v >= 50.0)
    assert THRESHOLDS[k] == 0.75
    assert cam["τ: our F1+ ≥ published F1+"] == "0.750 (3)"
    assert cam["our F1- at that τ (%)"] == f"{mean_neg[k]:.2f}"
    grad = rows["Grad-CAM"]  # one seed: its value alone; the published F1+ (66.30) is above its whole curve
    assert grad["Ours F1+ (%)"] == "20.00 (1)" and grad["Published Error (%)"] == "–" and grad["Published PxAP (%)"] == "–"
    assert grad["τ: our F1+ ≥ published F1+"] == "not reached (max F1+ 66.00) (1)"
    assert grad["our F1- at that τ (%)"] == "–"
    # the caption says why min-max has no published row; the sources are named
    assert "Min-max entropy has no published row" in md and "binarised" in md
    assert "Paper A, Table I; repo a/b, file doc/t.png" in md and "Paper B & co" in md
    # exp_b's data set has no published file: nothing written, no error
    assert (out / "exp_b" / "table2.md").is_file() and not list((out / "exp_b").glob("published*"))
    # deterministic: a rerun writes the same bytes
    first = {p.name: p.read_bytes() for p in (out / "exp_a").glob("published.*")}
    res = CliRunner().invoke(main, ["tables", "--runs", str(runs), "--out", str(out), "--published", str(published)])
    assert res.exit_code == 0, res.output
    assert first == {p.name: p.read_bytes() for p in (out / "exp_a").glob("published.*")}
    assert set(first) == {"published.md", "published.tex"}


def test_latex_is_booktabs_and_escaped(records, tmp_path):
    runs, published = records
    paths = write_published(discover(runs), tmp_path / "out", published, formats=("latex",))
    assert [p.name for p in paths] == ["published.tex"]
    tex = paths[0].read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex and r"\cmidrule" in tex
    caption = tex.split(r"\caption{")[1].split("}\n")[0]
    plain = re.sub(r"\$[^$]*\$", "", caption)
    for escaped in (r"\&", r"\%", r"\_", r"\#"):
        plain = plain.replace(escaped, "")
    assert r"exp\_a" in caption and not re.search(r"[%&#_$]", plain)
    assert "±" not in tex and "τ" not in tex and "≥" not in tex and r"$\pm$" in tex and r"$\tau$" in tex
    assert r"Paper B \& co" in tex
    body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    assert len(body) == 2 and all(row.replace(r"\&", "").count("&") == 13 - 1 for row in body)
    assert tex.count("{") == tex.count("}")


def test_reach_takes_the_largest_threshold_and_none_when_never_reached():
    curve = pd.DataFrame({"threshold": THRESHOLDS, "f1_pos": [60.0, 70.0, 45.0, 52.0, 10.0],
                          "f1_neg": [0.0, 30.0, 50.0, 55.0, 60.0]})
    assert reach(curve, 50.0) == (0.75, 55.0)
    assert reach(curve, 52.0) == (0.75, 55.0)  # >=, not >
    assert reach(curve, 60.5) == (0.25, 30.0)
    assert reach(curve, 70.01) is None


@pytest.mark.parametrize("text, message", [
    ("method,metric,source\ncam-avg,f1_pos,x\n", "missing column(s) value"),
    ("method,metric,value,source\ncam-avg,f1_pos,66.9,a\ncam-avg,dice,66.9,a\n", "line 3: unknown metric 'dice'"),
    ("method,metric,value,source\ncam-avg,f1_pos,66.9%,a\n", "line 2: the value '66.9%' of cam-avg f1_pos is not a number"),
    ("method,metric,value,source\ncam-avg,f1_pos,,a\n", "is not a number"),
    ("method,metric,value,source\ncam-avg,f1_pos,nan,a\n", "is not a number"),
    ("method,metric,value,source\ncam-avg,f1_pos,1,a\ncam-avg,f1_pos,2,b\n", "more than one value for cam-avg f1_pos"),
    ("", "not a readable CSV file"),
])
def test_malformed_file_is_a_clear_data_error(tmp_path, text, message):
    path = tmp_path / "glas.csv"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        load_published(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_malformed_file_through_the_cli_is_one_message(records, tmp_path):
    runs, published = records
    (published / "glas.csv").write_text("method,metric,value,source\ncam-avg,f1,66.9,a\n")
    res = CliRunner().invoke(main, ["tables", "--runs", str(runs), "--out", str(tmp_path / "o"), "--published", str(published)])
    assert res.exit_code == 2 and "unknown metric 'f1'" in res.output and "Traceback" not in res.output


def test_no_published_file_writes_nothing(records, tmp_path):
    runs, _ = records
    empty = tmp_path / "none"
    empty.mkdir()
    found = discover(runs)
    assert write_published(found, tmp_path / "out", empty) == []
    assert not (tmp_path / "out").exists()
    assert build_published(found.select("exp_b"), "synthetic", "exp_b", records[1]) is None
    assert published_curves({"cam-avg": [r.path for r in found.select("exp_a")]}, "synthetic", tmp_path / "fig",
                            records[1]) == []


def test_figure_one_panel_per_method_with_published_f1(records, tmp_path):
    runs, published = records
    res = CliRunner().invoke(main, ["figures", "--runs", str(runs), "--dataset", "glas", "--experiment", "exp_a",
                                    "--out", str(tmp_path / "fig"), "--published", str(published)])
    assert res.exit_code == 0, res.output
    base = tmp_path / "fig" / "exp_a" / "glas_published_tau_curves"
    assert base.with_suffix(".png").stat().st_size > 10_000 and base.with_suffix(".pdf").is_file()
    from PIL import Image

    with Image.open(base.with_suffix(".png")) as im:
        assert im.size[0] > im.size[1]  # two panels side by side: CAM-Avg and Grad-CAM


REAL_F1 = {  # Belharbi et al. TMI 2022, Table I: (error, F1+, F1-)
    "all-ones": (None, 66.01, 0.00), "cam-max": (1.25, 66.00, 26.32), "cam-lse": (1.25, 66.05, 27.93),
    "gradcam": (0.00, 66.30, 21.30), "cam-avg": (0.00, 66.90, 17.88), "wildcat": (1.25, 67.21, 22.96),
    "deepmil": (2.50, 68.52, 41.34), "unet": (None, 90.19, 88.52),
}
REAL_PXAP = {  # Rony et al. MELBA 2023, Table 1, GlaS mean over three trunks
    "cam-avg": 61.1, "gradcam": 67.5, "gradcampp": 70.8, "xgradcam": 67.5, "layercam": 68.2, "has": 64.8,
    "acol": 58.7, "spg": 57.7, "adl": 59.9, "cutmix": 55.6, "deepmil": 64.3, "cam-max": 53.9, "cam-lse": 61.9,
    "wildcat": 57.0, "unet": 96.2,
}


def test_the_committed_glas_file_holds_the_published_values():
    from conftest import REPO

    df = load_published(REPO / "results" / "published" / "glas.csv")
    got = {(m, k): v for m, k, v in zip(df["method"], df["metric"], df["value"])}
    want = {}
    for m, (err, pos, neg) in REAL_F1.items():
        want.update({(m, "f1_pos"): pos, (m, "f1_neg"): neg})
        if err is not None:
            want[(m, "cls_error")] = err
    want.update({(m, "pxap"): v for m, v in REAL_PXAP.items()})
    assert got == want  # 8 methods x (F1+, F1-), 6 errors, 15 PxAP; nothing else
    assert len(df) == 8 * 2 + 6 + 15
    assert "minmax" not in set(df["method"])  # no surviving source for the 2019 paper's row
    assert df["source"].str.contains("doc/tabglas.png").sum() == 22
    assert df["source"].str.contains("doc/per-loc.png").sum() == 15
    from wslbench.registry import METHODS

    assert set(df["method"]) <= set(METHODS.names())  # registry keys
