"""The paper's tables, regenerated from the run folders on disk (pandas).

Every finished run (``<runs>/<dataset>/<method>[+tag]/seed<k>/`` with ``status.json`` saying
``finished``, ``config.yaml`` and ``eval.json``) is one row; cells are mean ± sample std over
seeds with the number of seeds. Min-max runs with ``model.erase_depth = 0`` are the
"without erasing" variant (Tables 3-5). The best weakly supervised value of a column is bold
(the constant All-ones and the fully supervised U-Net are not contenders); a missing run shows
'–', never a zero; a method that does not classify shows 'n/a'.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from wslbench.io import finished_result

#: display order and names, as in the paper
METHOD_NAMES = {
    "all-ones": "All-ones",
    "cam-avg": "CAM-Avg",
    "cam-max": "CAM-Max",
    "cam-lse": "CAM-LSE",
    "wildcat": "Wildcat",
    "gradcam": "Grad-CAM",
    "deepmil": "Deep MIL",
    # WSOL methods (as trained by clovaai/wsolevaluation): Singh & Lee ICCV 2017; Zhang et al.
    # CVPR 2018; Zhang et al. ECCV 2018; Choe & Shim CVPR 2019; Yun et al. ICCV 2019
    "has": "HaS",
    "acol": "ACoL",
    "spg": "SPG",
    "adl": "ADL",
    "cutmix": "CutMix",
    # post-hoc maps of the Grad-CAM classifier (grad-cam package): Chattopadhay et al. WACV 2018;
    # Fu et al. BMVC 2020; Jiang et al. TIP 2021; Wang et al. CVPRW 2020; Draelos & Carin 2020
    # (arXiv:2011.08891); Muhammad & Yeasin IJCNN 2020
    "gradcampp": "Grad-CAM++",
    "xgradcam": "XGrad-CAM",
    "layercam": "LayerCAM",
    "scorecam": "Score-CAM",
    "hirescam": "HiResCAM",
    "eigencam": "Eigen-CAM",
    "minmax": "Ours (min-max)",
    "unet": "Full sup. (U-Net)",
}
NOT_CONTENDERS = {"all-ones", "unet"}
DATASET_NAMES = {"glas": "GlaS", "cub5": "CUB5", "cub": "CUB", "oxf": "OxF", "synthetic": "Synthetic"}
NOERASE = "minmax-noerase"
VARIANT_NAMES = {"minmax": "with erasing (u > 0)", NOERASE: "without erasing (u = 0)"}


def display_name(variant: str) -> str:
    """How a method (or the min-max no-erasing variant) is named in tables and figures."""
    return {**METHOD_NAMES, NOERASE: "Ours, no erasing"}.get(variant, variant)


def collect_runs(runs_dir: str | Path) -> pd.DataFrame:
    """One row per finished run: dataset, method, variant, tag, seed, metrics, path."""
    rows = []
    for status in sorted(Path(runs_dir).glob("*/*/seed*/status.json")):
        run = status.parent
        ev = finished_result(run)
        if ev is None:
            continue
        try:
            cfg = yaml.safe_load((run / "config.yaml").read_text()) or {}
        except (OSError, ValueError, yaml.YAMLError):
            continue  # a run still being written or broken: not a table row
        method = cfg.get("method", run.parent.name.split("+")[0])
        variant = method
        if method == "minmax" and int((cfg.get("model") or {}).get("erase_depth", 4)) == 0:
            variant = NOERASE
        rows.append({
            "dataset": cfg.get("dataset", run.parent.parent.name), "method": method, "variant": variant,
            "tag": cfg.get("tag"), "seed": int(cfg.get("seed", 0)), "path": str(run),
            **{k: ev.get(k) for k in ("cls_error", "f1_pos", "f1_neg", "crf_f1_pos", "crf_f1_neg", "train_time_s", "epochs_run")},
        })
    cols = ["dataset", "method", "variant", "tag", "seed", "path", "cls_error", "f1_pos", "f1_neg",
            "crf_f1_pos", "crf_f1_neg", "train_time_s", "epochs_run"]
    return pd.DataFrame(rows, columns=cols)


@dataclass
class Cell:
    mean: float | None = None
    std: float | None = None
    n: int = 0
    na: bool = False  # not applicable (All-ones' classification error)
    bold: bool = False
    arrow: str = ""  # "up" / "down" against a reference table

    def text(self, fmt: str, digits: int = 2) -> str:
        if self.na:
            return "n/a"
        if self.n == 0:
            return "--" if fmt == "latex" else "–"
        arrow = {"up": " ↑", "down": " ↓", "": ""}[self.arrow]
        if fmt == "latex":
            arrow = {"up": r" $\uparrow$", "down": r" $\downarrow$", "": ""}[self.arrow]
            body = f"{self.mean:.{digits}f} $\\pm$ {self.std:.{digits}f}"
            body = f"\\textbf{{{body}}}" if self.bold else body
            return f"{body}{arrow} {{\\scriptsize({self.n})}}"
        body = f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"
        body = f"**{body}**" if self.bold else body
        return f"{body}{arrow} ({self.n})"


def aggregate(values) -> Cell:
    v = np.asarray([x for x in values if x is not None and not pd.isna(x)], dtype=float)
    if v.size == 0:
        return Cell()
    return Cell(float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size))


@dataclass
class Table:
    """Rows x (group, column) cells, ready to render."""

    number: int
    caption: str
    rows: list[str]  # display names
    groups: list[tuple[str, list[str]]]  # (group title, column titles)
    cells: list[list[Cell]]

    def to_markdown(self) -> str:
        header = ["Method"] + [f"{g} {c}".strip() for g, cols in self.groups for c in cols]
        lines = [f"**Table {self.number}.** {self.caption}", "", "| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] + [":-:"] * (len(header) - 1)) + "|"]
        for name, row in zip(self.rows, self.cells):
            lines.append("| " + " | ".join([name] + [c.text("markdown") for c in row]) + " |")
        return "\n".join(lines) + "\n"

    def to_latex(self) -> str:
        ncols = sum(len(cols) for _, cols in self.groups)
        out = [r"\begin{table}[t]", r"\centering", r"\small",
               f"\\caption{{{latex_escape(self.caption)}}}", f"\\label{{tab:wslbench-{self.number}}}",
               r"\begin{tabular}{l" + "c" * ncols + "}", r"\toprule"]
        if any(g for g, _ in self.groups):
            heads, rules, start = [], [], 2
            for g, cols in self.groups:
                heads.append(f"\\multicolumn{{{len(cols)}}}{{c}}{{{latex_escape(g)}}}")
                rules.append(f"\\cmidrule(lr){{{start}-{start + len(cols) - 1}}}")
                start += len(cols)
            out.append(" & " + " & ".join(heads) + r" \\")
            out.append(" ".join(rules))
        out.append("Method & " + " & ".join(latex_escape(c) for _, cols in self.groups for c in cols) + r" \\")
        out.append(r"\midrule")
        for name, row in zip(self.rows, self.cells):
            out.append(latex_escape(name) + " & " + " & ".join(c.text("latex") for c in row) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        return "\n".join(out) + "\n"

    def to_frame(self) -> pd.DataFrame:
        data = {}
        for (g, cols), k0 in zip(self.groups, np.cumsum([0] + [len(c) for _, c in self.groups])):
            for j, c in enumerate(cols):
                data[f"{g} {c}".strip()] = [row[k0 + j].text("markdown").replace("**", "") for row in self.cells]
        return pd.DataFrame(data, index=pd.Index(self.rows, name="Method"))


def latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("±", r"$\pm$"), ("↑", r"$\uparrow$"), ("↓", r"$\downarrow$"), ("–", "--")):
        text = text.replace(a, b)
    return text


def _datasets(runs: pd.DataFrame) -> list[str]:
    present = set(runs["dataset"])
    return [d for d in DATASET_NAMES if d in present] + sorted(present - set(DATASET_NAMES))


def _variants(runs: pd.DataFrame, keys: list[str]) -> list[str]:
    present = set(runs["variant"])
    return [k for k in keys if k in present] + sorted(present - set(keys) - {NOERASE} - set(METHOD_NAMES))


def _mark_best(cells: list[list[Cell]], contenders: list[bool], lower_is_better: list[bool]) -> None:
    for j, lower in enumerate(lower_is_better):
        scored = [(cells[i][j].mean, i) for i in range(len(cells)) if contenders[i] and cells[i][j].n]
        if not scored:
            continue
        best = min(scored)[0] if lower else max(scored)[0]
        for value, i in scored:
            if np.isclose(value, best):
                cells[i][j].bold = True


def metric_table(runs, number, caption, metrics, variants, datasets, scale, lower, na_for=("all-ones",),
                 bold=True, titles=None, row_names: dict | None = None) -> Table:
    """Rows = variants, column groups = data sets, one column per metric."""
    titles = titles or {"cls_error": "Error (%)", "f1_pos": "F1+ (%)", "f1_neg": "F1- (%)",
                        "crf_f1_pos": "F1+ (%)", "crf_f1_neg": "F1- (%)", "train_time_s": "Time (min)"}
    cells = []
    for v in variants:
        row = []
        for d in datasets:
            sub = runs[(runs["variant"] == v) & (runs["dataset"] == d)]
            for m in metrics:
                if m == "cls_error" and v in na_for and len(sub):
                    row.append(Cell(na=True))
                    continue
                c = aggregate(sub[m].tolist())
                if c.n:
                    c.mean, c.std = c.mean * scale[m], c.std * scale[m]
                row.append(c)
        cells.append(row)
    if bold:
        _mark_best(cells, [v not in NOT_CONTENDERS for v in variants], [lower[m] for _ in datasets for m in metrics])
    row_names = row_names or METHOD_NAMES
    names = [row_names.get(v, METHOD_NAMES.get(v, v)) for v in variants]
    groups = [(DATASET_NAMES.get(d, d), [titles[m] for m in metrics]) for d in datasets]
    return Table(number, caption, names, groups, cells)


SCALE = {"cls_error": 1.0, "f1_pos": 100.0, "f1_neg": 100.0, "crf_f1_pos": 100.0, "crf_f1_neg": 100.0, "train_time_s": 1 / 60}
LOWER = {"cls_error": True, "f1_pos": False, "f1_neg": False, "crf_f1_pos": False, "crf_f1_neg": False, "train_time_s": True}


def build_tables(runs: pd.DataFrame) -> list[Table]:
    """Tables 1-6 of the paper from the collected runs (empty tables are still produced, all '–')."""
    datasets = _datasets(runs) or list(DATASET_NAMES)[:4]
    order = list(METHOD_NAMES)
    main_rows = [v for v in order if v in set(runs["variant"])] or order
    classifiers = [v for v in main_rows if v != "unet"]
    erasing = ["minmax", NOERASE]
    t = [
        metric_table(runs, 1, "Classification error (%) on the test sets.", ["cls_error"], classifiers, datasets, SCALE, LOWER),
        metric_table(runs, 2, "Pointwise localization on the test sets: Dice of the foreground (F1+) and of the background (F1-).",
                     ["f1_pos", "f1_neg"], main_rows, datasets, SCALE, LOWER),
        metric_table(runs, 3, "Min-max entropy: classification error (%) with and without recursive erasing.",
                     ["cls_error"], erasing, datasets, SCALE, LOWER, row_names=VARIANT_NAMES),
        metric_table(runs, 4, "Min-max entropy: F1+ and F1- with and without recursive erasing.",
                     ["f1_pos", "f1_neg"], erasing, datasets, SCALE, LOWER, row_names=VARIANT_NAMES),
        metric_table(runs, 5, "Min-max entropy: training time (minutes, one run) with and without recursive erasing.",
                     ["train_time_s"], erasing, datasets, SCALE, LOWER, bold=False, row_names=VARIANT_NAMES),
    ]
    crf_rows = [v for v in main_rows if v not in ("deepmil", "all-ones")]  # maps that are not probabilities
    crf = metric_table(runs, 6, "Pointwise localization after dense-CRF post-processing; arrows: change against Table 2 (Deep MIL excluded: its maps are not per-pixel probabilities).",
                       ["crf_f1_pos", "crf_f1_neg"], crf_rows, datasets, SCALE, LOWER)
    base = {name: row for name, row in zip(t[1].rows, t[1].cells)}
    for name, row in zip(crf.rows, crf.cells):
        for j, c in enumerate(row):
            ref = base.get(name, [Cell()] * len(row))[j]
            if c.n and ref.n and not np.isclose(c.mean, ref.mean):
                c.arrow = "up" if c.mean > ref.mean else "down"
    t.append(crf)
    return t


def write_tables(runs_dir: str | Path, out_dir: str | Path, formats=("latex", "markdown"),
                 runs: pd.DataFrame | None = None) -> list[Path]:
    """Build Tables 1-6 from the runs under ``runs_dir`` (``runs``: already collected from there)
    and write table<k>.tex / .md / .csv and tables.md; return the paths."""
    from wslbench.io import atomic_write_text

    runs = collect_runs(runs_dir) if runs is None else runs
    tables = build_tables(runs)
    out_dir = Path(out_dir)
    written = []
    for tab in tables:
        if "latex" in formats:
            written.append(out_dir / f"table{tab.number}.tex")
            atomic_write_text(written[-1], tab.to_latex())
        if "markdown" in formats:
            written.append(out_dir / f"table{tab.number}.md")
            atomic_write_text(written[-1], tab.to_markdown())
        if "csv" in formats:
            written.append(out_dir / f"table{tab.number}.csv")
            atomic_write_text(written[-1], tab.to_frame().to_csv())
    if "markdown" in formats:
        note = f"_Generated by `wslbench tables` from {len(runs)} finished run(s) under `{runs_dir}`; mean ± std over seeds (number of seeds)._\n\n"
        written.append(out_dir / "tables.md")
        atomic_write_text(written[-1], note + "\n".join(t.to_markdown() for t in tables))
    if "csv" in formats:
        written.append(out_dir / "runs.csv")
        atomic_write_text(written[-1], runs.to_csv(index=False))
    return written
