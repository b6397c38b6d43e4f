"""Published numbers beside ours: one table and one figure per experiment and data set.

Why: at the runs' own threshold our baselines' F1+ on GlaS lies far below the published one,
while their F1- lies above it. The published rows alone cannot say why: the published
binarisation rule of the baselines' maps survives in no source. What our records can say is
where on our own F1+(t) curve the published F1+ lies: the largest threshold t at which our F1+
still reaches it, and our F1- there. A published F1+ reached only at a low t, where our F1-
has collapsed, is the score of masks that cover most of the image (All-ones, the whole image,
scores F1+ 66 and F1- 0 on GlaS).

The published values are data, not code: ``results/published/<dataset>.csv`` (long format:
``method`` = registry key, ``metric`` one of METRICS, ``value`` in percent, ``source`` = the
citation), so that a value is checked against its source in one place and a data set is added
by adding a file. A data set without a file gets no table and no figure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from wslbench.errors import DataError
from wslbench.runs import inside

PUBLISHED_COLUMNS = ("method", "metric", "value", "source")
#: the published metrics, all in percent: classification error, Dice of foreground and background, PxAP
METRICS = ("cls_error", "f1_pos", "f1_neg", "pxap")
PUBLISHED_TITLES = {"cls_error": "Error (%)", "f1_pos": "F1+ (%)", "f1_neg": "F1- (%)", "pxap": "PxAP (%)"}
#: ours, from eval.json: key -> (column title, factor to percent); cls_error is already percent
OURS = {"cls_error": ("Error (%)", 1.0), "f1_pos": ("F1+ (%)", 100.0), "f1_neg": ("F1- (%)", 100.0),
        "auc_f1_pos": ("AUC F1+ (%)", 100.0), "auc_f1_neg": ("AUC F1- (%)", 100.0), "pxap": ("PxAP (%)", 100.0)}
REACH_TITLES = ("τ: our F1+ ≥ published F1+", "our F1- at that τ (%)")
CURVES = "threshold_curves.csv"
PAPER_PROTOCOL = "paper"  # eval.json protocol_label of the paper's evaluation (absent in older runs)
STEM = "published"  # <out>/<experiment>/published.md / .tex (.csv)

#: said in the folder's README and in every caption: why min-max entropy has no published row
NO_MINMAX = ("Min-max entropy has no published row: the 2019 paper's own GlaS row and the rule by which the "
             "baselines' maps were binarised survive in no source (the paper's numbers were lost in text "
             "extraction; the authors' code has no binarisation of the baselines' maps); the 2022 sources' own "
             "min-max rows are of a later model (with uncertainty), not the one benchmarked here.")


def published_dir() -> Path:
    """The repository's results/published (found from this file, like config.experiments_dir finds
    experiments/), else ./results/published: the published values travel with the code."""
    repo = Path(__file__).resolve().parent.parent / "results" / "published"
    return repo if repo.is_dir() else Path.cwd() / "results" / "published"


def published_file(dataset: str, directory: str | Path | None = None) -> Path | None:
    """``<directory>/<dataset>.csv`` (default directory: published_dir()), None when there is none:
    a data set without published values is not an error, it just gets no comparison."""
    path = Path(directory if directory is not None else published_dir()) / f"{dataset}.csv"
    return path if path.is_file() else None


def load_published(path: str | Path) -> pd.DataFrame:
    """The file as a frame (method, metric, value: float, source, text: the value as written, so a
    table shows the published digits, no more). A malformed file is a DataError naming the file,
    the line and what is wrong, since a silently dropped row would read as 'not published'."""
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"published values {path}: not a readable CSV file ({exc})") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in PUBLISHED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"published values {path}: missing column(s) {', '.join(missing)}; the file needs the "
                        f"columns {','.join(PUBLISHED_COLUMNS)} (found: {', '.join(df.columns) or 'none'})")
    df = df[list(PUBLISHED_COLUMNS)].apply(lambda s: s.str.strip()).reset_index(drop=True)
    values = []
    for i, row in df.iterrows():
        where = f"published values {path}, line {i + 2}"
        if not row["method"]:
            raise DataError(f"{where}: no method name")
        if row["metric"] not in METRICS:
            raise DataError(f"{where}: unknown metric {row['metric']!r} for {row['method']} "
                            f"(known metrics: {', '.join(METRICS)})")
        try:
            value = float(row["value"])
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise DataError(f"{where}: the value {row['value']!r} of {row['method']} {row['metric']} is not a number")
        values.append(value)
    twice = df[df.duplicated(["method", "metric"], keep=False)]
    if len(twice):
        pairs = sorted({f"{m} {k}" for m, k in zip(twice["method"], twice["metric"])})
        raise DataError(f"published values {path}: more than one value for {', '.join(pairs)}")
    return df.assign(text=df["value"], value=np.asarray(values, dtype=float))


@dataclass
class Stat:
    """Mean ± sample std over seeds, with the seed count; one seed shows its value alone (as in
    wslbench.tables: '± 0.00' would read as a measured spread)."""

    mean: float | None = None
    std: float | None = None
    n: int = 0

    def text(self, digits: int = 2) -> str:
        if not self.n:
            return "–"
        spread = f" ± {self.std:.{digits}f}" if self.std is not None else ""
        return f"{self.mean:.{digits}f}{spread} ({self.n})"


def stat(values, scale: float = 1.0) -> Stat:
    """Stat of the finite values (None, NaN and non-numbers are missing, not zero), times ``scale``."""
    v = []
    for x in values:
        try:
            x = float(x)
        except (TypeError, ValueError):
            continue
        if math.isfinite(x):
            v.append(x * scale)
    if not v:
        return Stat()
    a = np.asarray(v, dtype=float)
    return Stat(float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else None, int(a.size))


def mean_curve(paths) -> pd.DataFrame | None:
    """Mean, min and max over seeds of the runs' threshold_curves.csv, F1 in percent, on the thresholds
    every seed has (column ``n`` = seeds); None when no run has the file (runs made before it existed)."""
    frames = []
    for p in paths:
        f = Path(p) / CURVES
        if not f.is_file():
            continue
        df = pd.read_csv(f)
        if not {"threshold", "f1_pos", "f1_neg"} <= set(df.columns):
            raise DataError(f"{f}: needs the columns threshold, f1_pos, f1_neg (found: {', '.join(df.columns)})")
        frames.append(df[["threshold", "f1_pos", "f1_neg"]])
    if not frames:
        return None
    g = pd.concat(frames).groupby("threshold", sort=True)
    out = pd.DataFrame({"n": g.size()})
    for col in ("f1_pos", "f1_neg"):
        out[col] = 100.0 * g[col].mean()
        out[f"{col}_min"] = 100.0 * g[col].min()
        out[f"{col}_max"] = 100.0 * g[col].max()
    out = out[out["n"] == len(frames)].reset_index()
    return out


def reach(curve: pd.DataFrame, target: float) -> tuple[float, float] | None:
    """(τ, F1- at τ): the largest threshold whose mean F1+ is ≥ ``target`` (percent); None when the
    curve never reaches it."""
    ok = curve[curve["f1_pos"] >= target]
    if ok.empty:
        return None
    last = ok.iloc[-1]
    return float(last["threshold"]), float(last["f1_neg"])


@dataclass
class Comparison:
    """One method: its published values (text as published), our Stats, and where our mean F1+(t)
    reaches the published F1+."""

    variant: str
    published: dict[str, str]
    ours: dict[str, Stat]
    n_curves: int = 0  # seeds with threshold_curves.csv
    reached: tuple[float, float] | None = None  # (τ, our F1- there)
    best_f1_pos: float | None = None  # the curve's highest mean F1+, shown when it never reaches the published one

    def reach_cells(self) -> list[str]:
        if "f1_pos" not in self.published or not self.n_curves:
            return ["–", "–"]
        if self.reached is None:
            return [f"not reached (max F1+ {self.best_f1_pos:.2f}) ({self.n_curves})", "–"]
        tau, neg = self.reached
        return [f"{tau:.3f} ({self.n_curves})", f"{neg:.2f}"]

    def cells(self) -> list[str]:
        return ([self.published.get(m, "–") for m in METRICS] + [self.ours[k].text() for k in OURS]
                + self.reach_cells())


def _order(variants) -> list[str]:
    from wslbench.rows import ordered  # the order the methods declare, as in the tables

    return ordered(variants)


def compare(runs, published: pd.DataFrame) -> list[Comparison]:
    """One Comparison per method that has a published value and finished runs among ``runs``
    (wslbench.runs.Run of one experiment and data set). Only a run's own evaluation under the
    paper's protocol counts (a rescore under another protocol is another column of the tables,
    not another seed), and only untagged runs (variant == method): a tagged variant is another setup."""
    values = {(m, k): t for m, k, t in zip(published["method"], published["metric"], published["text"])}
    numbers = {(m, k): v for m, k, v in zip(published["method"], published["metric"], published["value"])}
    by_variant: dict[str, list] = {}
    for r in runs:
        if r.variant == r.method and r.path == r.record and r.protocol == PAPER_PROTOCOL:
            by_variant.setdefault(r.variant, []).append(r)
    out = []
    for variant in _order(set(published["method"]) & set(by_variant)):
        mine = sorted(by_variant[variant], key=lambda r: r.seed)
        ours = {k: stat([(r.result or {}).get(k) for r in mine], scale) for k, (_, scale) in OURS.items()}
        row = Comparison(variant, {m: values[(variant, m)] for m in METRICS if (variant, m) in values}, ours)
        curve = mean_curve([r.path for r in mine])
        if curve is not None and not curve.empty:
            row.n_curves = int(curve["n"].iloc[0])
            if (variant, "f1_pos") in numbers:
                row.reached = reach(curve, numbers[(variant, "f1_pos")])
                row.best_f1_pos = float(curve["f1_pos"].max())
        out.append(row)
    return out


def tex(text: str) -> str:
    """LaTeX-escaped text: the tables' one escape function (wslbench.tables.latex_escape)."""
    from wslbench.tables import latex_escape

    return latex_escape(text)


@dataclass
class PublishedTable:
    """The comparison of one experiment's runs on one data set, ready to render."""

    dataset: str
    experiment: str
    rows: list[Comparison]
    sources: dict[str, list[str]] = field(default_factory=dict)  # source -> the metrics it gives
    file: str = ""  # the published file, as named in the caption

    @property
    def groups(self) -> list[tuple[str, list[str]]]:
        return [("Published", [PUBLISHED_TITLES[m] for m in METRICS]), ("Ours", [t for t, _ in OURS.values()]),
                ("Ours where our F1+ reaches the published F1+", list(REACH_TITLES))]

    @property
    def caption(self) -> str:
        from wslbench.tables import DATASET_NAMES

        name = DATASET_NAMES.get(self.dataset, self.dataset)
        return (f"Published values beside ours on {name} (experiment {self.experiment}; published values from "
                f"{self.file}). Ours: mean ± sample std over seeds (number of seeds; one seed: its value alone) of "
                "Error, F1+ and F1- at each run's own threshold, of the areas under F1+(t) and F1-(t) for t in "
                "[0, 1], and of PxAP; '–': no value. Last two columns: the largest threshold τ at which the mean "
                "over seeds of our F1+(t) is still ≥ the published F1+, and our mean F1-(τ) there; a published "
                "F1+ that ours reaches only at a low τ, where our F1- has collapsed, is the score of masks that "
                "cover most of the image. The published rows come from other trunks, input sizes and training "
                f"budgets. {NO_MINMAX}")

    def source_lines(self) -> list[str]:
        return [f"{', '.join(PUBLISHED_TITLES[m] for m in metrics)}: {src}" for src, metrics in self.sources.items()]

    def to_markdown(self) -> str:
        from wslbench.tables import DATASET_NAMES, display_name

        header = ["Method"] + [f"{g} {c}" if g != self.groups[2][0] else c for g, cols in self.groups for c in cols]
        lines = [f"**Published vs ours, {DATASET_NAMES.get(self.dataset, self.dataset)}.** {self.caption}", "",
                 "| " + " | ".join(header) + " |", "|" + "|".join(["---"] + [":-:"] * (len(header) - 1)) + "|"]
        for row in self.rows:
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in [display_name(row.variant), *row.cells()])
                         + " |")
        lines += ["", "Published values: " + "; ".join(self.source_lines()) + "."]
        return "\n".join(lines) + "\n"

    def to_latex(self) -> str:
        from wslbench.tables import display_name, label_key, resize_close, resize_open

        ncols = sum(len(cols) for _, cols in self.groups)
        sources = " Published values: " + "; ".join(self.source_lines()) + "."
        out = [r"\begin{table*}[t]", r"\centering", r"\scriptsize", f"\\caption{{{tex(self.caption + sources)}}}",
               f"\\label{{tab:wslbench-{label_key(self.experiment)}-published-{label_key(self.dataset)}}}",
               *resize_open(ncols), r"\begin{tabular}{l" + "c" * ncols + "}", r"\toprule"]
        heads, rules, start = [], [], 2
        for g, cols in self.groups:
            heads.append(f"\\multicolumn{{{len(cols)}}}{{c}}{{{tex(g)}}}")
            rules.append(f"\\cmidrule(lr){{{start}-{start + len(cols) - 1}}}")
            start += len(cols)
        out += [" & " + " & ".join(heads) + r" \\", " ".join(rules),
                "Method & " + " & ".join(tex(c) for _, cols in self.groups for c in cols) + r" \\", r"\midrule"]
        for row in self.rows:
            out.append(" & ".join(tex(c) for c in [display_name(row.variant), *row.cells()]) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", *resize_close(ncols), r"\end{table*}"]
        return "\n".join(out) + "\n"

    def to_frame(self) -> pd.DataFrame:
        from wslbench.tables import display_name

        columns = [f"{g} {c}" for g, cols in self.groups for c in cols]
        return pd.DataFrame([row.cells() for row in self.rows], columns=columns,
                            index=pd.Index([display_name(r.variant) for r in self.rows], name="Method"))


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when it lies in it (the same text in every clone, so
    regenerated tables are byte-identical), else as given."""
    repo = Path(__file__).resolve().parent.parent
    try:
        return Path(path).resolve().relative_to(repo).as_posix()
    except ValueError:
        return Path(path).as_posix()


def build_published(runs, dataset: str, experiment: str, directory: str | Path | None = None) -> PublishedTable | None:
    """The table of ``runs`` (one experiment) on ``dataset``; None when the data set has no published
    file or no method has both a published value and runs."""
    path = published_file(dataset, directory)
    if path is None:
        return None
    published = load_published(path)
    rows = compare([r for r in runs if r.dataset == dataset], published)
    if not rows:
        return None
    shown = {r.variant for r in rows}
    sources: dict[str, list[str]] = {}
    for m, k, src in zip(published["method"], published["metric"], published["source"]):
        if m in shown and k not in sources.setdefault(src, []):
            sources[src].append(k)
    sources = {s: [m for m in METRICS if m in ks] for s, ks in sources.items() if ks}
    return PublishedTable(dataset, experiment, rows, sources, shown_path(path))


def write_published(discovery, out_dir: str | Path, directory: str | Path | None = None,
                    formats=("latex", "markdown"), experiment: str | None = None, echo=None) -> list[Path]:
    """For each experiment (or the one named) whose runs include a data set with a published file,
    ``<out>/<experiment>/published.md`` / ``.tex`` (``.csv`` with the csv format): one table per such
    data set. Nothing is written, and no error raised, for an experiment with none."""
    from wslbench.io import atomic_write_text
    from wslbench.tables import DATASET_NAMES

    chosen = discovery.select(experiment)
    order = {d: i for i, d in enumerate(DATASET_NAMES)}
    written = []
    for name in sorted({r.experiment for r in chosen}):
        runs = [r for r in chosen if r.experiment == name]
        datasets = sorted({r.dataset for r in runs}, key=lambda d: (order.get(d, 99), d))
        tables = [t for d in datasets if (t := build_published(runs, d, name, directory)) is not None]
        if not tables:
            continue
        out = inside(out_dir, name)  # never a write outside the output the user named
        mine = []
        if "markdown" in formats:
            mine.append(out / f"{STEM}.md")
            atomic_write_text(mine[-1], "\n".join(t.to_markdown() for t in tables))
        if "latex" in formats:
            mine.append(out / f"{STEM}.tex")
            atomic_write_text(mine[-1], "\n".join(t.to_latex() for t in tables))
        if "csv" in formats:
            mine.append(out / f"{STEM}.csv")
            atomic_write_text(mine[-1], pd.concat([t.to_frame().assign(Dataset=t.dataset) for t in tables]).to_csv())
        if echo and mine:
            echo(f"{name}: published vs ours ({', '.join(t.dataset for t in tables)}) -> {len(mine)} files in {out}")
        written += mine
    return written


# -- the figure --------------------------------------------------------------------------------

COLOURS = {"f1_pos": "tab:blue", "f1_neg": "tab:orange"}


def own_evaluations(paths) -> list[Path]:
    """The run folders among ``paths`` scored by their own evaluation under the paper's protocol:
    not a rescore folder (``<run>/rescore/<name>``), the same maps again under another protocol."""
    from wslbench.io import finished_result
    from wslbench.runs import RESCORE_FOLDER

    return [Path(p) for p in paths if Path(p).parent.name != RESCORE_FOLDER
            and str((finished_result(Path(p)) or {}).get("protocol_label") or PAPER_PROTOCOL) == PAPER_PROTOCOL]


def _run_thresholds(paths) -> list[float]:
    from wslbench.io import finished_result

    found = {float(t) for p in paths if (t := (finished_result(Path(p)) or {}).get("threshold")) is not None}
    return sorted(found)


def published_curves(runs: dict[str, list[Path]], dataset: str, out_dir: str | Path,
                     directory: str | Path | None = None, title: str = "") -> list[Path]:
    """Small multiples, one panel per method with a published F1+ and F1- and runs with
    threshold_curves.csv (``runs``: variant -> run folders, wslbench.figures.finished_runs): our
    F1+(τ) and F1-(τ) (mean over seeds, band: min to max), the published F1+ and F1- as dashed lines
    in the same colours, the largest τ where our mean F1+ still reaches the published F1+ marked,
    and the runs' own threshold in grey: ``<dataset>_published_tau_curves.png/.pdf``. Nothing is
    drawn for a data set without a published file."""
    from matplotlib.patches import Patch

    from wslbench.figures import _plt, save, small_multiples
    from wslbench.tables import display_name

    path = published_file(dataset, directory)
    if path is None:
        return []
    pub = load_published(path)
    numbers = {(m, k): v for m, k, v in zip(pub["method"], pub["metric"], pub["value"])}
    runs = {v: own for v, paths in runs.items() if (own := own_evaluations(paths))}
    panels = []
    for variant in _order([v for v in runs if (v, "f1_pos") in numbers and (v, "f1_neg") in numbers]):
        curve = mean_curve(runs[variant])
        if curve is not None and not curve.empty:
            panels.append((variant, curve, numbers[(variant, "f1_pos")], numbers[(variant, "f1_neg")]))
    if not panels:
        return []
    plt = _plt()
    fig, axes = small_multiples(plt, len(panels), width=3.4)
    n, cols = len(panels), axes.shape[1]
    legend: dict = {}
    for i, (ax, (variant, curve, pub_pos, pub_neg)) in enumerate(zip(axes.flat, panels)):
        seeds = int(curve["n"].iloc[0])
        for col, name in (("f1_pos", "F1+"), ("f1_neg", "F1-")):
            c = COLOURS[col]
            ax.fill_between(curve["threshold"], curve[f"{col}_min"], curve[f"{col}_max"], color=c, alpha=0.18, lw=0)
            ax.plot(curve["threshold"], curve[col], color=c, lw=1.5, label=f"ours: {name}(τ), mean over seeds")
            ax.axhline(pub_pos if col == "f1_pos" else pub_neg, color=c, ls="--", lw=1.1, label=f"published {name}")
        for t in _run_thresholds(runs[variant]):
            ax.axvline(t, color="0.55", lw=0.9, label="the runs' own threshold")
        hit = reach(curve, pub_pos)
        if hit is not None:
            tau, neg = hit
            ax.axvline(tau, color="black", ls=":", lw=1.1, label="largest τ where our mean F1+ ≥ published F1+")
            ax.plot([tau, tau], [float(curve.loc[curve["threshold"] == tau, "f1_pos"].iloc[0]), neg], "o",
                    color="black", ms=3.5)
            note = f"τ = {tau:.3f}: F1- {neg:.1f}"
        else:
            note = f"F1+ never reaches {pub_pos:g}"
        ax.text(0.97, 0.5, note, transform=ax.transAxes, ha="right", va="center", fontsize=7,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1.5})
        ax.set(title=f"{display_name(variant)} ({seeds} seed{'s' if seeds != 1 else ''})", xlim=(0, 1), ylim=(0, 100))
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
        if i + cols >= n:  # no panel below this one
            ax.set_xlabel("threshold τ")
        if i % cols == 0:
            ax.set_ylabel("Dice, % (mean over images)")
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    legend["ours: band from min to max over seeds"] = Patch(facecolor="0.5", alpha=0.3, lw=0)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.legend(list(legend.values()), list(legend), loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(4, len(legend)), fontsize=8, frameon=False)
    return save(fig, Path(out_dir) / f"{dataset}_published_tau_curves")
