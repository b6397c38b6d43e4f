"""The paper's tables, regenerated from the run folders on disk (pandas), one set per experiment.

Every finished run found under the root (``wslbench.runs``: any depth, ``status.json`` saying
``finished``, ``config.yaml`` and ``eval.json``) is one row; rows are grouped by experiment,
and each experiment gets its own Tables 1-6 in ``<out>/<experiment>/``, headed by what the
experiment is (trunk, resolution, epochs, checkpoint selection). Cells are mean ± sample std
over seeds with the number of seeds (one seed: its value alone, no "± 0.00"). Min-max runs
with ``model.erase_depth = 0`` are the "without erasing" variant (Tables 3-5); another tag is
a row of its own; rows are named and ordered as their methods declare (wslbench.rows). Each
cell carries a 95% bootstrap interval, and bold marks the best contender of a column together
with every contender a paired bootstrap cannot tell from it (wslbench.verdicts); a constant map,
a method trained with pixel labels and a row with fewer seeds than the others are never bold.
A missing run shows '–', never a zero; a
method that does not classify shows 'n/a'; a data-set column with no run in a table is left out
unless ``full_layout`` asks for the paper's layout.

The ``.tex`` tables need ``booktabs`` (rules) and ``graphicx`` (a table of more than
``RESIZE_ABOVE`` data columns is set in ``\\resizebox``, shrunk to the line width when wider,
never enlarged) in the preamble; each table's label is ``tab:wslbench-<experiment>-<k>``
(``label_key``), so that several experiments' tables can share one document. Text is escaped
by ``latex_escape`` for pdflatex with its default (OT1) font encoding.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from wslbench.errors import DataError
from wslbench.io import finished_result
from wslbench.rows import display_name, ordered, row_info  # noqa: F401 (display_name: tables' public name)
from wslbench.runs import NOERASE, Discovery, Run, check_cells, discover, inside
from wslbench.verdicts import LEVEL, RESAMPLES, RESAMPLING_SEED, PerImage, RowScores, column_statistics, tied_best

DATASET_NAMES = {"glas": "GlaS", "cub5": "CUB5", "cub": "CUB", "oxf": "OxF", "synthetic": "Synthetic"}
PAPER_DATASETS = ["glas", "cub5", "cub", "oxf"]  # the paper's column groups (full layout)
VARIANT_NAMES = {"minmax": "with erasing (u > 0)", NOERASE: "without erasing (u = 0)"}


#: Dice scores that leave out images where prediction and truth are both empty (eval.json n_empty_both)
EMPTY_COUNTED = ("f1_pos", "f1_neg", "crf_f1_pos", "crf_f1_neg")


def cell_name(variant: str, dataset: str, row_names: dict) -> str:
    """A table cell named in a caption note: its row as the table shows it, then its data set."""
    return f"{row_names.get(variant, display_name(variant))} {DATASET_NAMES.get(dataset, dataset)}"


def empty_note(runs: pd.DataFrame, variants, datasets, metrics, titles: dict, row_names: dict) -> str:
    """A caption sentence naming every cell whose means leave out images with an undefined Dice
    (both masks empty), with how many images over its seeds; '' when there are none."""
    parts = []
    for v in variants:
        for d in datasets:
            sub = runs[(runs["variant"] == v) & (runs["dataset"] == d)]
            for m in metrics:
                col = f"n_empty_{m}"
                n = int(sub[col].fillna(0).sum()) if m in EMPTY_COUNTED and col in sub else 0
                if n:
                    parts.append(f"{cell_name(v, d, row_names)} {titles[m]}: {n}")
    if not parts:
        return ""
    return (" Images where prediction and truth are both empty (Dice undefined) are left out of the means; "
            "left out, summed over seeds: " + "; ".join(parts) + ".")


COLUMNS = ["experiment", "dataset", "method", "variant", "tag", "seed", "path", "cls_error", "f1_pos", "f1_neg",
           "crf_f1_pos", "crf_f1_neg", "train_time_s", "epochs_run"]


def runs_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per run: experiment, dataset, method, variant, tag, seed, path, metrics, and the
    images whose Dice was undefined (prediction and truth both empty), per score (metrics doc)."""
    rows = [{"experiment": r.experiment, "dataset": r.dataset, "method": r.method, "variant": r.variant,
             "tag": r.config.get("tag"), "seed": r.seed, "path": str(r.path),
             **{k: r.result.get(k) for k in COLUMNS[7:]},
             **{k: r.result.get(k) for k in EVAL_FIELDS},  # read here, so build_tables need not reopen eval.json
             **{f"n_empty_{k}": int((r.result.get("n_empty_both") or {}).get(k, 0)) for k in EMPTY_COUNTED}}
            for r in runs]
    return pd.DataFrame(rows, columns=COLUMNS + [f"n_empty_{k}" for k in EMPTY_COUNTED] + list(EVAL_FIELDS))


def collect_runs(runs_dir: str | Path, experiment: str | None = None, discovery: Discovery | None = None) -> pd.DataFrame:
    """One row per finished run under ``runs_dir`` (at any depth; of one experiment when named).
    No finished run, or two runs claiming one cell, is an error."""
    found = discovery or discover(runs_dir)
    runs = found.select(experiment)
    if not runs:
        raise DataError(f"no finished runs under {found.root}\n{found.skipped_report()}")
    check_cells(runs)
    return runs_frame(runs)


@dataclass
class Cell:
    mean: float | None = None
    std: float | None = None
    n: int = 0
    na: bool = False  # not applicable (All-ones' classification error)
    bold: bool = False
    arrow: str = ""  # "up" / "down" against a reference table
    interval: tuple[float, float] | None = None  # 95% bootstrap interval (wslbench.verdicts)
    short: bool = False  # fewer seeds than the column's other rows: marked, never bold

    def text(self, fmt: str, digits: int = 2) -> str:
        """The cell in Markdown; LaTeX is the same text through latex_escape, bold and the seed
        count set in LaTeX's own way."""
        if self.na:
            return "n/a"
        if self.n == 0:
            return latex_escape("–") if fmt == "latex" else "–"
        spread = f" ± {self.std:.{digits}f}" if self.std is not None else ""
        body = f"{self.mean:.{digits}f}{spread}"
        arrow = {"up": " ↑", "down": " ↓", "": ""}[self.arrow]
        ci = f"[{self.interval[0]:.{digits - 1}f}, {self.interval[1]:.{digits - 1}f}] " if self.interval else ""
        mark = SHORT_MARK if self.short else ""
        if fmt == "latex":
            body = f"\\textbf{{{latex_escape(body)}}}" if self.bold else latex_escape(body)
            return f"{body}{latex_escape(arrow)} {{\\scriptsize{' ' + ci if ci else ''}({self.n}){latex_escape(mark)}}}"
        body = f"**{body}**" if self.bold else body
        return f"{body}{arrow} {ci}({self.n}){mark}"


def aggregate(values) -> Cell:
    v = np.asarray([x for x in values if x is not None and not pd.isna(x)], dtype=float)
    if v.size == 0:
        return Cell()
    # one seed has no spread: its cell shows no "± 0.00", which would read as a measured std
    return Cell(float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else None, int(v.size))


@dataclass
class Table:
    """Rows x (group, column) cells, ready to render."""

    number: int
    caption: str
    rows: list[str]  # display names
    groups: list[tuple[str, list[str]]]  # (group title, column titles)
    cells: list[list[Cell]]
    experiment: str = ""  # what the experiment is (describe_experiment), shown above the table
    name: str = ""  # the experiment's name (its folder), which makes the LaTeX label unique

    def to_markdown(self) -> str:
        header = ["Method"] + [f"{g} {c}".strip() for g, cols in self.groups for c in cols]
        lines = [f"_{self.experiment}_", ""] if self.experiment else []
        lines += [f"**Table {self.number}.** {self.caption}", "", "| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] + [":-:"] * (len(header) - 1)) + "|"]
        for name, row in zip(self.rows, self.cells):
            lines.append("| " + " | ".join([name] + [c.text("markdown") for c in row]) + " |")
        return "\n".join(lines) + "\n"

    def to_latex(self) -> str:
        ncols = sum(len(cols) for _, cols in self.groups)
        caption = f"{self.experiment} {self.caption}".strip()
        label = f"tab:wslbench-{label_key(self.name)}-{self.number}" if self.name else f"tab:wslbench-{self.number}"
        out = [r"\begin{table}[t]", r"\centering", r"\small",
               f"\\caption{{{latex_escape(caption)}}}", f"\\label{{{label}}}",
               *resize_open(ncols), r"\begin{tabular}{l" + "c" * ncols + "}", r"\toprule"]
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
        out += [r"\bottomrule", r"\end{tabular}", *resize_close(ncols), r"\end{table}"]
        return "\n".join(out) + "\n"

    def to_frame(self) -> pd.DataFrame:
        data = {}
        for (g, cols), k0 in zip(self.groups, np.cumsum([0] + [len(c) for _, c in self.groups])):
            for j, c in enumerate(cols):
                data[f"{g} {c}".strip()] = [row[k0 + j].text("markdown").replace("**", "") for row in self.cells]
        return pd.DataFrame(data, index=pd.Index(self.rows, name="Method"))


#: LaTeX for each character that pdflatex (default OT1 font encoding, utf8 input) does not set as
#: itself: the specials escaped, the symbols the tables use written as commands
LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
         "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
         ">": r"\textgreater{}", "±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "≥": r"$\geq$",
         "≤": r"$\leq$", "τ": r"$\tau$", "–": "--", "†": r"\dag{}"}


def latex_escape(text: str) -> str:
    """LaTeX for ``text``, one character at a time (so a brace or backslash that an escape inserts is
    never escaped again); the only escape function of the tables (wslbench.published uses it too)."""
    return "".join(LATEX.get(c, c) for c in str(text))


def label_key(name: str) -> str:
    """``name`` reduced to characters safe in a ``\\label`` (letters, digits, '-', '.'; any other run
    of characters becomes one '-')."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", str(name)).strip("-") or "x"


#: more data columns than this and the tabular is shrunk to the line width when wider (graphicx)
RESIZE_ABOVE = 5


def resize_open(ncols: int) -> list[str]:
    """The line that opens ``\\resizebox`` around a tabular of ``ncols`` data columns ([] when narrow):
    the width is the line width when the tabular is wider, its own width otherwise (never enlarged)."""
    return [r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%"] if ncols > RESIZE_ABOVE else []


def resize_close(ncols: int) -> list[str]:
    return ["}"] if ncols > RESIZE_ABOVE else []


def _datasets(runs: pd.DataFrame, full_layout: bool = False) -> list[str]:
    present = set(runs["dataset"]) | (set(PAPER_DATASETS) if full_layout else set())
    return [d for d in DATASET_NAMES if d in present] + sorted(present - set(DATASET_NAMES))


def _main_rows(runs: pd.DataFrame, full_layout: bool = False) -> list[str]:
    """The rows with runs (every registered method too in the full layout), in the order their
    methods declare (wslbench.rows); the no-erasing variant has Tables 3-5."""
    from wslbench.registry import list_methods

    present = set(runs["variant"]) | (set(list_methods()) if full_layout else set())
    return ordered(present - {NOERASE})


#: the mark of a row with fewer seeds than the column's other rows (never bold)
SHORT_MARK = "†"
#: columns computed from others: the mean Dice over the two classes (the paper's point: F1+ alone
#: rewards marking everything); its bootstrap averages its parts' resampled statistics
DERIVED = {"f1_mean": ("f1_pos", "f1_neg"), "crf_f1_mean": ("crf_f1_pos", "crf_f1_neg")}


def verdict_note() -> str:
    """The caption sentence that says what bold, brackets and the mark mean."""
    return (f" Brackets: 95% bootstrap interval ({RESAMPLES} resamples of seeds and test images, the same draws "
            f"for every row, resampling seed {RESAMPLING_SEED}; scores pooled over images, such as PxAP, resample "
            f"seeds only). Bold: the best row of a column and every row a paired bootstrap test cannot tell from "
            f"it at the {LEVEL:.0%} level (two-sided); a constant map, a method trained with pixel labels and a "
            f"row marked {SHORT_MARK} (fewer seeds than the column's other rows) are never bold.")


def _row_scores(sub: pd.DataFrame, metric: str, scale: float, per_image: PerImage) -> RowScores | None:
    series = [per_image.scores(p, metric, v, scale) for p, v in zip(sub["path"], sub[metric])]
    series = [x for x in series if x is not None]
    return RowScores(series) if series else None


def _mark_verdicts(cells: list[list[Cell]], column_rows: list[list], contenders: list[bool],
                   lower_is_better: list[bool]) -> None:
    """Intervals, the fewer-seeds mark and bold (the tied-best set) of every column.
    ``column_rows[j][i]``: row i's RowScores in column j, or a tuple of parts (a derived column)."""
    for j, lower in enumerate(lower_is_better):
        col = [row[j] for row in cells]
        most = max((c.n for c in col), default=0)
        for c in col:
            c.short = bool(c.n) and c.n < most
        rows = column_rows[j]
        parts = [r for r in rows if isinstance(r, tuple)]
        if parts:  # derived: the mean of its parts, each part with its own column's shared draws
            per_part = [column_statistics([r[k] if isinstance(r, tuple) else None for r in rows])
                        for k in range(len(parts[0]))]
            stats, points = [], []
            for i, r in enumerate(rows):
                whole = isinstance(r, tuple) and all(x is not None for x in r)
                stats.append(np.mean([ps[i] for ps, _ in per_part], axis=0) if whole else None)
                points.append(float(np.mean([pp[i] for _, pp in per_part])) if whole else None)
        else:
            stats, points = column_statistics(rows)
        eligible = [contenders[i] and not col[i].short and col[i].n > 0 for i in range(len(col))]
        verdict = tied_best(stats, points, eligible, lower)
        for c, interval, tied in zip(col, verdict.intervals, verdict.tied):
            if c.n and not c.na:
                c.interval = interval
                c.bold = tied


def diverged_note(runs: pd.DataFrame, variants, datasets, row_names: dict) -> str:
    """A caption sentence naming every run whose training loss became non-finite and which was
    scored at its selected checkpoint (train.on_nonfinite=evaluate); '' when there are none."""
    if "diverged_at_epoch" not in runs:
        return ""
    parts = []
    for v in variants:
        for d in datasets:
            sub = runs[(runs["variant"] == v) & (runs["dataset"] == d) & runs["diverged_at_epoch"].notna()]
            for _, r in sub.sort_values("seed").iterrows():
                parts.append(f"{cell_name(v, d, row_names)} seed {int(r['seed'])} (epoch {int(r['diverged_at_epoch'])})")
    if not parts:
        return ""
    return (" Training diverged (non-finite loss) in: " + "; ".join(parts) + "; such a run is scored at the "
            "checkpoint its selection rule had kept before it diverged.")


def metric_table(runs, number, caption, metrics, variants, datasets, scale, lower, bold=True, titles=None,
                 row_names: dict | None = None, per_image: PerImage | None = None) -> Table:
    """Rows = variants, column groups = data sets, one column per metric; with ``bold``, every
    cell gets its bootstrap interval and the tied-best set of each column is bold."""
    titles = titles or TITLES
    per_image = per_image or PerImage()
    cells, column_rows = [], [[] for _ in datasets for _ in metrics]
    for v in variants:
        row, j = [], 0
        for d in datasets:
            sub = runs[(runs["variant"] == v) & (runs["dataset"] == d)]
            for m in metrics:
                if m == "cls_error" and not row_info(v).classifies and len(sub):
                    row.append(Cell(na=True))
                    column_rows[j].append(None)
                    j += 1
                    continue
                c = aggregate(sub[m].tolist())
                if c.n:
                    c.mean = c.mean * scale[m]
                    c.std = None if c.std is None else c.std * scale[m]
                row.append(c)
                if bold:
                    column_rows[j].append(tuple(_row_scores(sub, p, scale[p], per_image) for p in DERIVED[m])
                                          if m in DERIVED else _row_scores(sub, m, scale[m], per_image))
                j += 1
        cells.append(row)
    if bold:
        _mark_verdicts(cells, column_rows, [row_info(v).contender for v in variants],
                       [lower[m] for _ in datasets for m in metrics])
        caption += verdict_note()
    row_names = row_names or {}
    names = [row_names.get(v, display_name(v)) for v in variants]
    groups = [(DATASET_NAMES.get(d, d), [titles[m] for m in metrics]) for d in datasets]
    caption += empty_note(runs, variants, datasets, metrics, titles, row_names)
    caption += diverged_note(runs, variants, datasets, row_names)
    return Table(number, caption, names, groups, cells)


TITLES = {"cls_error": "Error (%)", "f1_pos": "F1+ (%)", "f1_neg": "F1- (%)", "f1_mean": "Mean Dice (%)",
          "crf_f1_pos": "F1+ (%)", "crf_f1_neg": "F1- (%)", "crf_f1_mean": "Mean Dice (%)", "train_time_s": "Time (min)"}
SCALE = {"cls_error": 1.0, "f1_pos": 100.0, "f1_neg": 100.0, "f1_mean": 100.0, "crf_f1_mean": 100.0, "crf_f1_pos": 100.0, "crf_f1_neg": 100.0, "train_time_s": 1 / 60,
         "pxap": 100.0, "crf_pxap": 100.0, "auc_f1_pos": 100.0, "auc_f1_neg": 100.0}
LOWER = {"cls_error": True, "f1_pos": False, "f1_neg": False, "f1_mean": False, "crf_f1_mean": False, "crf_f1_pos": False, "crf_f1_neg": False, "train_time_s": True,
         "pxap": False, "crf_pxap": False, "auc_f1_pos": False, "auc_f1_neg": False}
#: read from each run's eval.json for the threshold-free tables and the protocol (wslbench.protocols)
EVAL_FIELDS = ("pxap", "crf_pxap", "auc_f1_pos", "auc_f1_neg", "protocol_label", "diverged_at_epoch")
PAPER_PROTOCOL = "paper"
PROTOCOL_TEXT = {PAPER_PROTOCOL: "paper (fixed threshold, checkpoint on validation classification error)"}


def _with_eval_fields(runs: pd.DataFrame) -> pd.DataFrame:
    """Add the threshold-free scores and the protocol of each run from its eval.json (runs
    recorded before they existed: no score, protocol 'paper')."""
    runs = runs.copy()
    missing = [k for k in EVAL_FIELDS if k not in runs.columns]
    evs = [finished_result(p) or {} for p in runs["path"]] if missing else []
    for k in missing:
        runs[k] = pd.Series([ev.get(k) for ev in evs], index=runs.index, dtype=object)
    runs["protocol_label"] = [PAPER_PROTOCOL if pd.isna(v) else v for v in runs["protocol_label"]]
    for name, parts in DERIVED.items():
        runs[name] = pd.to_numeric(runs[parts[0]], errors="coerce") / 2 + pd.to_numeric(runs[parts[1]], errors="coerce") / 2
    return runs


def _split_by_protocol(runs: pd.DataFrame, datasets: list[str]) -> tuple[pd.DataFrame, list[str], dict, str]:
    """One column group per (data set, protocol) when the runs used several protocols, so a
    table shows them side by side; returns runs, column-group keys, their titles, a caption note."""
    labels = sorted(set(runs["protocol_label"]), key=lambda s: (s != PAPER_PROTOCOL, s)) or [PAPER_PROTOCOL]
    if len(labels) == 1:
        return runs, datasets, {}, f" Protocol: {PROTOCOL_TEXT.get(labels[0], labels[0])}."
    runs = runs.copy()
    runs["dataset"] = [d if p == PAPER_PROTOCOL else f"{d} [{p}]" for d, p in zip(runs["dataset"], runs["protocol_label"])]
    keys, titles = [], {}
    for d in datasets:
        for p in labels:
            key = d if p == PAPER_PROTOCOL else f"{d} [{p}]"
            if p == PAPER_PROTOCOL or key in set(runs["dataset"]):
                keys.append(key)
                titles[DATASET_NAMES.get(key, key)] = f"{DATASET_NAMES.get(d, d)} [{p}]"
    return runs, keys, titles, " Column groups name their selection protocol (wslbench.protocols)."


def build_tables(runs: pd.DataFrame, full_layout: bool = False, experiment: str = "", name: str = "") -> list[Table]:
    """Tables 1-6 of the paper from the collected runs of one experiment (``experiment``: the
    line that says what it is), 7 (PxAP, with and without CRF) and 8 (areas under the F1 curves).
    Every caption names the selection protocol, and runs of several protocols get one column
    group each. A data-set column group with no run is left out, and a table left with no column
    is not returned; ``full_layout`` keeps the paper's rows and data sets. ``name``: the
    experiment's name, which makes the tables' LaTeX labels unique (label_key)."""
    runs = _with_eval_fields(runs)
    datasets = _datasets(runs, full_layout)
    runs, datasets, group_titles, protocol_note = _split_by_protocol(runs, datasets)
    main_rows = _main_rows(runs, full_layout)
    per_image = PerImage()  # each record's per_image.csv, read once for all tables
    erasing = ["minmax", NOERASE]
    t = [
        metric_table(runs, 1, "Classification error (%) on the test sets.", ["cls_error"], main_rows, datasets, SCALE, LOWER,
                     per_image=per_image),
        metric_table(runs, 2, "Pointwise localization on the test sets: Dice of the foreground (F1+), of the background "
                     "(F1-) and their mean.", ["f1_pos", "f1_neg", "f1_mean"], main_rows, datasets, SCALE, LOWER,
                     per_image=per_image),
        metric_table(runs, 3, "Min-max entropy: classification error (%) with and without recursive erasing.",
                     ["cls_error"], erasing, datasets, SCALE, LOWER, row_names=VARIANT_NAMES, per_image=per_image),
        metric_table(runs, 4, "Min-max entropy: F1+ and F1- with and without recursive erasing.",
                     ["f1_pos", "f1_neg"], erasing, datasets, SCALE, LOWER, row_names=VARIANT_NAMES, per_image=per_image),
        metric_table(runs, 5, "Min-max entropy: training time (minutes, one run) with and without recursive erasing.",
                     ["train_time_s"], erasing, datasets, SCALE, LOWER, bold=False, row_names=VARIANT_NAMES),
    ]
    crf_rows = [v for v in main_rows if row_info(v).crf]  # not Deep MIL's attention nor a constant map
    crf = metric_table(runs, 6, "Pointwise localization after dense-CRF post-processing; arrows: change against Table 2 (Deep MIL excluded: its maps are not per-pixel probabilities).",
                       ["crf_f1_pos", "crf_f1_neg", "crf_f1_mean"], crf_rows, datasets, SCALE, LOWER, per_image=per_image)
    base = {name: row for name, row in zip(t[1].rows, t[1].cells)}
    for row_name, row in zip(crf.rows, crf.cells):
        for j, c in enumerate(row):
            ref = base.get(row_name, [Cell()] * len(row))[j]
            if c.n and ref.n and not np.isclose(c.mean, ref.mean):
                c.arrow = "up" if c.mean > ref.mean else "down"
    t.append(crf)
    t.append(metric_table(
        runs, 7, "Pixel average precision (PxAP, Choe et al. 2020): foreground precision-recall over all test pixels "
        "pooled, thresholds every 0.001; without and with dense-CRF post-processing ('–': no CRF evaluation, or maps "
        "that take none).", ["pxap", "crf_pxap"], main_rows, datasets, SCALE, LOWER,
        titles={"pxap": "PxAP (%)", "crf_pxap": "PxAP + CRF (%)"}, per_image=per_image))
    t.append(metric_table(
        runs, 8, "Threshold-free Dice: area under F1+(t) and F1-(t) for t in [0, 1] (mean over test images at every "
        "threshold of the grid).", ["auc_f1_pos", "auc_f1_neg"], main_rows, datasets, SCALE, LOWER,
        titles={"auc_f1_pos": "AUC F1+ (%)", "auc_f1_neg": "AUC F1- (%)"}, per_image=per_image))
    for tab in t:
        tab.caption += protocol_note
        tab.groups = [(group_titles.get(g, g), cols) for g, cols in tab.groups]
    for tab in t:
        tab.experiment, tab.name = experiment, name
    return t if full_layout else [tab for tab in map(_drop_empty_groups, t) if tab.groups]


def _drop_empty_groups(tab: Table) -> Table:
    """The table without the column groups (data sets) in which no cell has a run."""
    start, groups, cols = 0, [], []
    for g, titles in tab.groups:
        idx = list(range(start, start + len(titles)))
        start += len(titles)
        if any(row[j].n or row[j].na for row in tab.cells for j in idx):
            groups.append((g, titles))
            cols += idx
    cells = [[row[j] for j in cols] for row in tab.cells]
    return Table(tab.number, tab.caption, tab.rows, groups, cells, tab.experiment, tab.name)


DESCRIBED = {"trunk": "trunk ", "resolution": "input ", "epochs": "", "selection": "checkpoint: ", "device": "on "}
SELECTION_NAMES = {"val_error": "lowest validation error", "val_f1_pos": "highest validation F1+",
                   "val_f1_mean": "highest validation mean of F1+ and F1-",
                   "val_localization": "best validation localization (pixel budget)"}


def _run_facts(run: Run) -> dict[str, str | None]:
    """What one run says about its experiment, in words (None: nothing to say, e.g. All-ones' epochs)."""
    model, data = run.config.get("model") or {}, run.config.get("data") or {}
    pretrained = model.get("pretrained")
    weights = "from scratch" if pretrained in (False, None) else "ImageNet-pretrained" if pretrained is True else "pretrained (file)"
    size = [f"scale {data['scale']}"] if data.get("scale") not in (None, 1, 1.0) else []
    size += [f"{data['patch_size']}-px training patches"] if data.get("patch_size") else []
    size += [f"{data['image_size']}-px images"] if data.get("image_size") else []
    env = run.env()
    device = env.get("device")
    if device and device != "cpu" and env.get("device_name"):
        device = env["device_name"]
    selection = (run.result or {}).get("selection")
    posthoc = bool((run.config.get("eval") or {}).get("from_run"))  # its trunk and weights are its source run's
    return {
        "trunk": f"{model['backbone']} {weights}" if model.get("backbone") and not posthoc else None,
        "resolution": ", ".join(size) or "full size",
        "epochs": f"{epochs} epoch{'s' if epochs != 1 else ''}" if (epochs := run.setting("epochs")) else None,
        "selection": SELECTION_NAMES.get(selection, f"best validation {selection}") if selection else None,
        # the forward dtype the run recorded (env.json amp: float32 / bfloat16; absent in older runs)
        "device": ((device.upper() if device == "cpu" else device) + (f" ({env['amp']})" if env.get("amp") else "")
                   if device else None),
    }


def _summarise(values: dict[tuple[str, str], str | None], per_dataset: bool) -> str:
    """One fact over the (data set, variant) rows: the common value, or the common value and
    the exceptions named by data set (``per_dataset``) or by variant."""
    values = {k: v for k, v in values.items() if v is not None}
    if not values:
        return ""
    by = (lambda k: DATASET_NAMES.get(k[0], k[0])) if per_dataset else (lambda k: display_name(k[1]))
    counts: dict[str, int] = {}
    for v in values.values():
        counts[v] = counts.get(v, 0) + 1
    if len(counts) == 1:
        return next(iter(counts))
    if per_dataset:
        groups: dict[str, list[str]] = {}
        for k, v in values.items():
            groups.setdefault(by(k), [])
            if v not in groups[by(k)]:
                groups[by(k)].append(v)
        return ", ".join(f"{name} {' / '.join(vs)}" for name, vs in groups.items())
    common = max(counts, key=lambda v: (counts[v], v))
    # a variant whose exceptions differ between data sets is named with its data set
    split = {k[1] for k in values if len({v for j, v in values.items() if j[1] == k[1] and v != common}) > 1}
    others: dict[str, list[str]] = {}
    for k, v in values.items():
        who = f"{by(k)} on {DATASET_NAMES.get(k[0], k[0])}" if k[1] in split else by(k)
        if v != common and who not in others.setdefault(v, []):
            others[v].append(who)
    exceptions = "; ".join(f"{', '.join(who)}: {v}" for v, who in others.items())
    return f"{common} ({exceptions})"


def describe_experiment(name: str, runs: list[Run]) -> str:
    """The line that heads an experiment's tables: its name, trunk, resolution, epochs,
    checkpoint selection and device, as the runs' config.yaml / eval.json / env.json say."""
    order = {v: i for i, v in enumerate(ordered({r.variant for r in runs}))}
    ds_order = {d: i for i, d in enumerate(DATASET_NAMES)}
    runs = sorted(runs, key=lambda r: (ds_order.get(r.dataset, 99), r.dataset, order.get(r.variant, 99), r.variant, r.seed))
    facts = {}
    for r in runs:
        facts.setdefault((r.dataset, r.variant), _run_facts(r))
    parts = []
    for what, label in DESCRIBED.items():
        text = _summarise({k: f[what] for k, f in facts.items()}, per_dataset=what == "resolution")
        if text:
            parts.append(label + text)
    return f"Experiment {name}: " + "; ".join(parts) + "."


def build_experiment(found: Discovery, experiment: str) -> tuple[list[Table], list[str]]:
    """The tables of one experiment of the discovered runs, and its Table 2 rows (registry keys)."""
    runs = found.select(experiment)
    check_cells(runs)
    frame = runs_frame(runs)
    return build_tables(frame, False, describe_experiment(experiment, runs), experiment), _main_rows(_with_eval_fields(frame))


def write_tables(runs_dir: str | Path, out_dir: str | Path, formats=("latex", "markdown"),
                 experiment: str | None = None, full_layout: bool = False,
                 discovery: Discovery | None = None, echo=None) -> list[Path]:
    """Find the runs under ``runs_dir`` (``discovery``: already found there) and write, for each
    experiment (or the one named), Tables 1-6 as ``<out>/<experiment>/table<k>.tex / .md / .csv``
    and ``tables.md``; ``echo`` hears one line per experiment. Returns the paths."""
    from wslbench.io import atomic_write_text

    found = discovery or discover(runs_dir)
    chosen = found.select(experiment)
    if not chosen:
        raise DataError(f"no finished runs under {found.root}\n{found.skipped_report()}")
    check_cells(chosen)
    written = []
    for name in sorted({r.experiment for r in chosen}):
        runs = [r for r in chosen if r.experiment == name]
        frame = runs_frame(runs)
        tables = build_tables(frame, full_layout, describe_experiment(name, runs), name)
        out = inside(out_dir, name)  # never a write outside the output the user named
        mine = []
        if "markdown" in formats and any(t.number == 2 for t in tables):
            from wslbench.summary import verdict

            mine.append(out / "verdict.md")
            atomic_write_text(mine[-1], verdict(tables, _main_rows(_with_eval_fields(frame)), name))
        for tab in tables:
            if "latex" in formats:
                mine.append(out / f"table{tab.number}.tex")
                atomic_write_text(mine[-1], tab.to_latex())
            if "markdown" in formats:
                mine.append(out / f"table{tab.number}.md")
                atomic_write_text(mine[-1], tab.to_markdown())
            if "csv" in formats:
                mine.append(out / f"table{tab.number}.csv")
                atomic_write_text(mine[-1], tab.to_frame().to_csv())
        if "markdown" in formats:
            where = Path(runs_dir).as_posix()
            note = (f"_Generated by `wslbench tables` from {len(runs)} finished run(s) of experiment `{name}` under "
                    f"`{where}`; mean ± sample std over seeds (number of seeds; a single seed shows its value alone)._\n\n")
            mine.append(out / "tables.md")
            atomic_write_text(mine[-1], note + "\n".join(t.to_markdown() for t in tables))
        if "csv" in formats:
            mine.append(out / "runs.csv")
            atomic_write_text(mine[-1], frame.to_csv(index=False))
        left_out = sorted(set(range(1, 7)) - {t.number for t in tables})
        if echo:
            echo(f"{name}: {len(runs)} finished run(s) -> {len(mine)} files in {out}"
                 + (f" (table(s) {', '.join(map(str, left_out))} left out: no run has their scores)" if left_out else ""))
        written += mine
    return written
