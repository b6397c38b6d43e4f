"""Figures (matplotlib, PNG + PDF): average precision-recall curves of the foreground and the
background (the paper's Figure 6), visual comparison grids of the predicted masks (its
Figures 3 and 7-15), and training curves per method from metrics.jsonl (has each method's loss
flattened within the budget?)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from wslbench.io import atomic_write_bytes
from wslbench.runs import inside

OVERLAY = np.array([255, 40, 40], dtype=np.float32)  # predicted foreground tint


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def small_multiples(plt, n: int, width: float, height: float = 2.9, columns: int = 4):
    """A figure of ``n`` panels, at most ``columns`` a row: (figure, axes array of rows x columns)."""
    cols = min(columns, n)
    rows = -(-n // cols)
    return plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)


def save(fig, base: Path) -> list[Path]:
    """Write ``base``.png and ``base``.pdf atomically; the PDF carries no creation date, so
    regenerating a figure from the same records gives the same bytes."""
    out = []
    for ext in ("png", "pdf"):
        buf = io.BytesIO()
        meta = {"CreationDate": None} if ext == "pdf" else None
        fig.savefig(buf, format=ext, dpi=150, bbox_inches="tight", metadata=meta)
        atomic_write_bytes(base.with_suffix(f".{ext}"), buf.getvalue())
        out.append(base.with_suffix(f".{ext}"))
    _plt().close(fig)
    return out


def plot_pr(curves: dict[str, pd.DataFrame], base: Path, title: str = "") -> list[Path]:
    """Two panels (foreground, background); one line per label; curves from pr_curve.csv."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    for ax, col, name in ((axes[0], "precision_pos", "foreground (F1+)"), (axes[1], "precision_neg", "background (F1-)")):
        for label, df in curves.items():
            ax.plot(df["recall"], df[col], label=label, lw=1.6)
        ax.set(xlabel="recall", title=name, xlim=(0, 1), ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("precision (interpolated)")
    axes[1].legend(loc="lower left", fontsize=8)
    if title:
        fig.suptitle(title)
    return save(fig, base)


def run_pr_figure(run_dir: str | Path) -> list[Path]:
    """The run's own PR figure, next to its pr_curve.csv, and its threshold curves beside it."""
    run_dir = Path(run_dir)
    df = pd.read_csv(run_dir / "pr_curve.csv")
    title = f"{run_dir.parent.parent.name}: {run_dir.parent.name} {run_dir.name}"
    out = plot_pr({run_dir.parent.name: df}, run_dir / "pr_curve", title=title)
    if (run_dir / "threshold_curves.csv").is_file():
        out += plot_threshold_curves(run_dir, title)
    return out


def plot_threshold_curves(run_dir: Path, title: str = "") -> list[Path]:
    """Left: the pooled precision-recall curve of the foreground (its area is PxAP); right: mean
    F1+ and F1- against the threshold, tau marked (threshold_curves.png/.pdf)."""
    import json

    df = pd.read_csv(run_dir / "threshold_curves.csv")
    ev = json.loads((run_dir / "eval.json").read_text()) if (run_dir / "eval.json").is_file() else {}
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    pxap = ev.get("pxap")
    left.step(df["recall"], df["precision"], where="post", lw=1.6,
              label=f"PxAP {100 * pxap:.1f}" if pxap is not None else None)
    left.set(xlabel="recall (pooled pixels)", ylabel="precision", title="foreground, all test pixels",
             xlim=(0, 1), ylim=(0, 1.02))
    for col, name in (("f1_pos", "F1+"), ("f1_neg", "F1-")):
        area = ev.get(f"auc_{col}")
        right.plot(df["threshold"], df[col], lw=1.6, label=f"{name} (area {100 * area:.1f})" if area is not None else name)
    if ev.get("threshold") is not None:
        right.axvline(ev["threshold"], color="gray", ls="--", lw=1, label=f"tau = {ev['threshold']:.3f}")
    right.set(xlabel="threshold", ylabel="Dice (mean over images)", title="F1 against the threshold",
              xlim=(0, 1), ylim=(0, 1.02))
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    return save(fig, run_dir / "threshold_curves")


def finished_runs(runs_dir: str | Path, dataset: str, experiment: str | None = None,
                  discovery=None) -> dict[str, dict[str, list[Path]]]:
    """experiment -> variant -> folders of the finished ``dataset`` runs under ``runs_dir``
    (any depth, ``wslbench.runs``), variants in the order their methods declare (wslbench.rows). None found is an error that
    names the root, the data sets that were found and the runs skipped."""
    from wslbench.errors import DataError
    from wslbench.rows import row_info
    from wslbench.runs import check_cells, discover

    found = discovery or discover(runs_dir)
    runs = found.select(experiment)
    check_cells(runs)
    mine = [r for r in runs if r.dataset == dataset and r.path == r.record]  # rescores are not seeds
    if not mine:
        others = ", ".join(sorted({r.dataset for r in runs})) or "none"
        raise DataError(f"no finished {dataset} runs under {found.root} (data sets with finished runs: {others})"
                        + (f"\n{found.skipped_report()}" if found.skipped else ""))
    out: dict[str, dict[str, list[Path]]] = {}
    for r in sorted(mine, key=lambda r: (r.experiment, row_info(r.variant).order, r.seed)):
        out.setdefault(r.experiment, {}).setdefault(r.variant, []).append(r.path)
    return out


def write_figures(runs_dir: str | Path, dataset: str, out_dir: str | Path, n_images: int = 6,
                  data_root: str | None = None, experiment: str | None = None, discovery=None,
                  echo=None, published: str | Path | None = None) -> list[Path]:
    """PR curves and the mask grid of ``dataset`` for each experiment (or the one named), in
    ``<out>/<experiment>/``, like the tables; ``echo`` gets what was not drawn and why. With a
    published file for ``dataset`` (``published``: its folder, default the repository's
    results/published), our F1(t) curves against the published F1 too (wslbench.published)."""
    from wslbench.published import published_curves

    paths = []
    for name, runs in finished_runs(runs_dir, dataset, experiment, discovery).items():
        out = inside(out_dir, name)  # never a write outside the output the user named
        for family, subset in figure_sets(runs).items():
            stem = f"{dataset}_{family}" if family else dataset
            paths += compare_pr(subset, dataset, out, title=f"{dataset} ({name}){f': {family}' if family else ''}", stem=stem)
            paths += visual_grid(subset, dataset, out, n_images, data_root, stem=stem, echo=echo)
        paths += training_curves(runs, dataset, out, title=f"{dataset} ({name}): training curves")
        paths += write_convergence(runs, out / f"{dataset}_convergence.md",
                                   title=f"{dataset} ({name}): has each training loss flattened?")
        paths += published_curves(runs, dataset, out, published,
                                   title=f"{dataset} ({name}): our F1+(τ) and F1-(τ) against the published F1+ and F1- (dashed)")
    return paths


def write_convergence(runs: dict[str, list[Path]], path: Path, title: str = "") -> list[Path]:
    """The training figure's question in numbers (wslbench.convergence), atomically written."""
    from wslbench.convergence import convergence_markdown
    from wslbench.io import atomic_write_text

    atomic_write_text(path, convergence_markdown(runs, title))
    return [path]


#: method families drawn in figures of their own (``<dataset>_<family>_pr``, ``_masks``) beside
#: the references they are compared with, so that no figure holds twenty methods; every other
#: method (the paper's, third-party plugins) is in the main figure
FAMILY_FIGURES = {
    "wsol": (("cam-avg", "minmax"), ("has", "acol", "spg", "adl", "cutmix")),
    "posthoc": (("cam-avg", "gradcam", "minmax"), ("gradcampp", "xgradcam", "layercam", "scorecam", "hirescam", "eigencam")),
}


def figure_sets(runs: dict[str, list[Path]]) -> dict[str, dict[str, list[Path]]]:
    """family ('' for the main figure) -> the variants it draws, in ``runs``' order: the main
    figure leaves out the families' members, a family's figure adds its references."""
    members = {m for _, family in FAMILY_FIGURES.values() for m in family}
    sets = {"": {v: p for v, p in runs.items() if v.split("+")[0] not in members}}
    for family, (references, methods) in FAMILY_FIGURES.items():
        if any(v.split("+")[0] in methods for v in runs):
            sets[family] = {v: p for v, p in runs.items() if v in references or v.split("+")[0] in methods}
    return {k: v for k, v in sets.items() if v}


#: metrics.jsonl series drawn by training_curves: the total training loss, min-max's three terms
#: (L+ on x * M+, L- on x * (1 - M+), the localizer's L_f) where present, and the validation
#: score the checkpoint is chosen on, in % (classifiers: error; U-Net: mean of F1+ and F1-)
LOSS_SERIES = {"train_loss": "train loss", "train_loss_pos": "L+", "train_loss_neg": "L-", "train_loss_loc": "L_f"}
VALIDATION_SERIES = {"val_error": ("validation error, %", 1.0), "val_f1_mean": ("validation mean Dice, %", 100.0)}


def training_history(paths: list[Path]) -> pd.DataFrame:
    """Long table (seed, epoch, series, value) of the runs' metrics.jsonl: the loss series of
    LOSS_SERIES that the runs logged, the VALIDATION_SERIES (in %) and ``lr``."""
    from wslbench.io import read_jsonl
    from wslbench.runs import seed_label

    rows = []
    for path in paths:
        seed = seed_label(path)
        for rec in read_jsonl(Path(path) / "metrics.jsonl"):  # [] when the file is missing
            for key in [*LOSS_SERIES, *VALIDATION_SERIES, "lr"]:
                if rec.get(key) is not None:
                    scale = VALIDATION_SERIES[key][1] if key in VALIDATION_SERIES else 1.0
                    rows.append({"seed": seed, "epoch": int(rec["epoch"]) + 1, "series": key,
                                 "value": scale * float(rec[key])})
    return pd.DataFrame(rows, columns=["seed", "epoch", "series", "value"])


def diverged_runs(paths: list[Path]) -> dict[str, dict]:
    """Seed label -> eval.json of each run whose training loss became non-finite and which was
    scored at its kept checkpoint (train.on_nonfinite=evaluate)."""
    from wslbench.io import finished_result
    from wslbench.runs import seed_label

    return {seed_label(p): ev for p in paths if (ev := finished_result(Path(p)) or {}).get("diverged_at_epoch")}


def loss_axis_top(h: pd.DataFrame, diverged: dict[str, dict]) -> float | None:
    """Top of the loss axis for a panel with a diverged run: the highest loss up to each diverged
    seed's kept checkpoint (every epoch of the other seeds), plus a margin, so the explosion before
    the non-finite loss does not flatten the rest; None (matplotlib's own) when nothing diverged."""
    if not diverged:
        return None
    cut = {s: ev.get("checkpoint_epoch") or ev["diverged_at_epoch"] for s, ev in diverged.items()}
    losses = h[h.series.isin(list(LOSS_SERIES))]
    kept = losses[[e <= cut.get(s, np.inf) for s, e in zip(losses.seed, losses.epoch)]]
    return 1.1 * float(kept.value.max()) if len(kept) else None


def training_curves(runs: dict[str, list[Path]], dataset: str, out_dir: str | Path, title: str = "") -> list[Path]:
    """One panel per variant: its loss series per epoch (one line per seed and series, left axis),
    its validation score (grey, right axis) and the epochs where the learning rate changed
    (dotted verticals): ``<dataset>_training.png/.pdf``."""
    from wslbench.convergence import lr_phases
    from wslbench.tables import display_name

    histories = {v: training_history(paths) for v, paths in runs.items()}
    histories = {v: h for v, h in histories.items() if not h.empty}
    if not histories:
        return []
    plt = _plt()
    fig, axes = small_multiples(plt, len(histories), width=3.6)
    colours = dict(zip(LOSS_SERIES, ("black", "tab:blue", "tab:orange", "tab:green")))
    styles = ("-", "--", ":", "-.")
    legend: dict = {}
    for ax, (variant, h) in zip(axes.flat, histories.items()):
        right = ax.twinx()
        for k, (seed, hs) in enumerate(h.groupby("seed", sort=True)):
            for key, name in LOSS_SERIES.items():
                d = hs[hs.series == key]
                if not d.empty:
                    ax.plot(d.epoch, d.value, color=colours[key], ls=styles[k % len(styles)], lw=1.2,
                            label=f"{name} (left axis)" if k == 0 else None)
            for key, (name, _) in VALIDATION_SERIES.items():
                d = hs[hs.series == key]
                if not d.empty:
                    right.plot(d.epoch, d.value, color="0.6", ls=styles[k % len(styles)], lw=0.9,
                               label=f"{name} (right axis)" if k == 0 else None)
        # the first epoch of every learning-rate phase after a run's first (wslbench.convergence)
        steps = sorted({start for _, d in h[h.series == "lr"].groupby("seed")
                        for start, _, _ in lr_phases([{"epoch": e - 1, "lr": v} for e, v in zip(d.epoch, d.value)])[1:]})
        for e in steps:
            ax.axvline(e - 0.5, color="0.3", ls=":", lw=0.9, label="learning-rate step")
        diverged = diverged_runs(runs[variant])
        for ev in diverged.values():
            ax.axvline(ev["diverged_at_epoch"] - 0.5, color="tab:red", ls="--", lw=0.9,
                       label="diverged: non-finite loss (scored at its kept checkpoint)")
        ax.set(title=display_name(variant), xlabel="epoch")
        ax.set_ylim(bottom=0)
        top = loss_axis_top(h, diverged)
        peak = h[h.series.isin(list(LOSS_SERIES))].value.max()
        if top is not None and peak > top:
            ax.set_ylim(0, top)
            ax.text(0.5, 0.96, f"loss off the axis up to {peak:.3g}",
                    transform=ax.transAxes, ha="center", va="top", fontsize=7, color="tab:red")
        right.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        for axis in (ax, right):
            for handle, label in zip(*axis.get_legend_handles_labels()):
                legend.setdefault(label, handle)
    for ax in list(axes.flat)[len(histories):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    # one legend for every panel, below them: inside a panel it would hide the last epochs
    fig.legend(list(legend.values()), list(legend), loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=len(legend), fontsize=8, title="one line style per seed", title_fontsize=8, frameon=False)
    return save(fig, Path(out_dir) / f"{dataset}_training")


def compare_pr(runs: dict[str, list[Path]], dataset: str, out_dir: str | Path, title: str = "",
               stem: str | None = None) -> list[Path]:
    """Average PR curves of every variant in ``runs`` (variant -> run folders; mean over seeds)."""
    from wslbench.tables import display_name

    curves = {}
    for variant, paths in runs.items():
        frames = [pd.read_csv(p / "pr_curve.csv") for p in paths if (p / "pr_curve.csv").is_file()]
        if frames:
            curves[display_name(variant)] = pd.concat(frames).groupby("recall", as_index=False).mean()
    if not curves:
        return []
    return plot_pr(curves, Path(out_dir) / f"{stem or dataset}_pr", title=title or dataset)


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    out = image.astype(np.float32).copy()
    out[mask] = (1 - alpha) * out[mask] + alpha * OVERLAY
    return out.astype(np.uint8)


def load_mask(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """A run's saved binary mask at ``shape`` (H, W): masks evaluated at another resolution
    (``data.scale``) are resized, nearest, for display. None when the file is missing."""
    from PIL import Image

    if not path.is_file():
        return None
    with Image.open(path) as m:
        if m.size != (shape[1], shape[0]):
            m = m.resize((shape[1], shape[0]), Image.NEAREST)
        return np.array(m) > 127


def visual_grid(runs: dict[str, list[Path]], dataset: str, out_dir: str | Path, n_images: int = 6,
                data_root: str | None = None, stem: str | None = None, echo=None) -> list[Path]:
    """Rows = test images, columns = image, ground truth, each variant's binary mask overlaid
    (``runs``: variant -> run folders; the first seed's masks). Not drawn, and an existing figure
    kept, when a variant's run has no saved masks: masks/ is not committed, so in a fresh clone
    the grid would be a column of dashes over a good figure (``echo`` says which runs)."""
    from wslbench.config import dataset_options, from_dict, yaml_load
    from wslbench.registry import create_dataset
    from wslbench.tables import display_name

    if not runs:
        return []
    bare = [str(paths[0]) for paths in runs.values() if not (paths[0] / "masks").is_dir()]
    if bare:
        if echo is not None:
            echo(f"{stem or dataset}_masks not drawn: {len(bare)} run(s) have no saved masks (masks/ is not "
                 "committed; `wslbench eval <run>` writes them from the run's checkpoint):\n  " + "\n  ".join(bare))
        return []
    first = next(iter(runs.values()))[0]
    cfg = from_dict(yaml_load((first / "config.yaml").read_text()))
    test = create_dataset(dataset, split="test", root=data_root or cfg.data.get("root"), augment=False, cache=None,
                          **dataset_options(cfg.data, drop=("cache",)))
    picks = np.linspace(0, len(test) - 1, min(n_images, len(test))).round().astype(int)
    columns = ["image", "ground truth"] + [display_name(v) for v in runs]
    plt = _plt()
    fig, axes = plt.subplots(len(picks), len(columns), figsize=(1.9 * len(columns), 1.7 * len(picks)), squeeze=False)
    for r, idx in enumerate(picks):
        image, truth = test.raw(int(idx))
        rec = test.records[int(idx)]
        panels = [image, overlay(image, truth)]
        for variant, paths in runs.items():
            mask = load_mask(paths[0] / "masks" / f"{rec.id}.png", truth.shape)
            panels.append(None if mask is None else overlay(image, mask))
        for c, panel in enumerate(panels):
            ax = axes[r][c]
            ax.axis("off")
            if panel is None:
                ax.text(0.5, 0.5, "–", ha="center", va="center", fontsize=14)
            else:
                ax.imshow(panel)
            if r == 0:
                ax.set_title(columns[c], fontsize=8)
        axes[r][0].text(-0.05, 0.5, f"{rec.id} ({test.class_names[rec.label] if test.class_names else rec.label})",
                        transform=axes[r][0].transAxes, rotation=90, va="center", ha="right", fontsize=6)
    fig.tight_layout()
    return save(fig, Path(out_dir) / f"{stem or dataset}_masks")
