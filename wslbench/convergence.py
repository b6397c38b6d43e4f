"""Has a run's training loss flattened? The benchmark's budget rule ("every method's training loss
must have flattened by the end; where one method needs more epochs, give all of them that many") as
numbers from metrics.jsonl, beside the training-curve figure that shows the same thing.

A run trains in learning-rate phases (step decay). For each phase, the loss's mean over its last
WINDOW epochs is compared with the mean over the WINDOW epochs before: their difference per epoch
is the late rate. The run's mean rate is its whole fall per epoch, from its first WINDOW epochs to
the phase's last. Their ratio is 1 for a loss falling in a straight line and tends to 0 as it
levels off, whatever the run's length (a share of the whole fall would call any straight line
flat once the run is long enough). Window means, not epoch values: on 85 GlaS training images one
epoch's loss moves by several hundredths from noise alone.

A loss has flattened in a phase when its late rate is under FLAT_RATIO of its mean rate (for an
exponential approach, from about 2.3 time constants on: 90 % of the way). One whose whole fall is
under MIN_DROP of its first window's level has not fallen at all (a ratio of a near-zero fall is
noise). A phase is too short to tell when it holds fewer than two windows, or when it ends before
three windows of the run have passed (the window before its last would overlap the run's first,
and the ratio would be 1 by construction). The phase that matters is the
constant-rate one before the last step: a loss still falling there that goes flat only because
the rate was cut (U-Net at 30 epochs on GlaS: flat at 0.62 after the step, 0.33 with a longer
budget) was stopped, not converged."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from wslbench.io import read_jsonl

#: epochs per window mean
WINDOW = 10
#: flat: falling over the phase's last window at under this fraction of the run's mean rate
FLAT_RATIO = 0.25
#: a loss whose mean fell by less than this share of its first window has not fallen: nothing to judge
MIN_DROP = 0.05
#: the losses judged: the total, and min-max's L+ (the classifier on x * M+, the slow term)
SERIES = {"train_loss": "train loss", "train_loss_pos": "L+"}


def lr_phases(records: list[dict]) -> list[tuple[int, int, float]]:
    """(first epoch, last epoch, learning rate) of each run of equal rates, epochs counted from 1."""
    phases: list[list] = []
    for rec in sorted(records, key=lambda r: r["epoch"]):
        epoch, lr = int(rec["epoch"]) + 1, rec.get("lr")
        if phases and np.isclose(phases[-1][2], lr if lr is not None else np.nan, equal_nan=True):
            phases[-1][1] = epoch
        else:
            phases.append([epoch, epoch, lr if lr is not None else np.nan])
    return [tuple(p) for p in phases]


def loss_plateaus(run_dir: str | Path, window: int = WINDOW, flat_ratio: float = FLAT_RATIO) -> pd.DataFrame:
    """One row per judged loss series and learning-rate phase of the run in ``run_dir``: the
    phase's epochs and rate, the window means (run's first, phase's second-to-last and last), the
    late rate over the run's mean rate, and the verdict: "yes" (flat), "no", "too short" or "did
    not fall"."""
    records = [r for r in read_jsonl(Path(run_dir) / "metrics.jsonl") if "epoch" in r]
    rows = []
    for key, name in SERIES.items():
        values = {int(r["epoch"]) + 1: float(r[key]) for r in records if r.get(key) is not None}
        if not values:
            continue
        epochs = sorted(values)
        first = float(np.mean([values[e] for e in epochs[:window]])) if len(epochs) >= window else np.nan
        for start, end, lr in lr_phases(records):
            mine = [values[e] for e in epochs if start <= e <= end]
            row = {"series": name, "epochs": f"{start}-{end}", "lr": lr, "first": first,
                   "before": np.nan, "last": np.nan, "rate_ratio": np.nan, "flat": "too short"}
            if len(mine) >= 2 * window and end >= 3 * window:
                before, last = float(np.mean(mine[-2 * window:-window])), float(np.mean(mine[-window:]))
                row.update(before=before, last=last)
                if first - last < MIN_DROP * abs(first):
                    row["flat"] = "did not fall"
                else:
                    # first window centred on epoch (window + 1) / 2, last on end - (window - 1) / 2
                    mean_rate = (first - last) / (end - window)
                    row["rate_ratio"] = (before - last) / window / mean_rate
                    row["flat"] = "yes" if row["rate_ratio"] < flat_ratio else "no"
            rows.append(row)
    return pd.DataFrame(rows, columns=["series", "epochs", "lr", "first", "before", "last", "rate_ratio", "flat"])


def convergence_markdown(runs: dict[str, list[Path]], title: str = "", window: int = WINDOW,
                         flat_ratio: float = FLAT_RATIO) -> str:
    """Markdown table of loss_plateaus for every run (variant -> run folders), with the rule."""
    from wslbench.runs import seed_label
    from wslbench.tables import display_name

    def num(x, fmt):
        return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else fmt.format(x)

    lines = [f"# {title}" if title else "# Training-loss convergence", "",
             f"Per learning-rate phase: mean loss over the run's first {window} epochs, over the phase's "
             f"second-to-last and last {window} epochs, and the rate ratio: the fall per epoch between those "
             f"two windows over the run's mean fall per epoch (first window to the phase's last; 1: a straight "
             f"line, 0: level). Flat: ratio under {flat_ratio:g}; 'did not fall': the loss fell by less than {MIN_DROP:.0%} "
             f"of its first window over the run; 'too short': a phase of fewer than {2 * window} epochs or ending before epoch {3 * window}. "
             "A loss that is still falling at a constant rate and flat only after the rate is cut was "
             "stopped by the schedule, not converged (wslbench/convergence.py).", "",
             "| Method | Seed | Loss | Epochs | lr | First | Second-to-last | Last | Rate ratio | Flat |",
             "|---|:-:|---|:-:|:-:|:-:|:-:|:-:|:-:|:-:|"]
    for variant, paths in runs.items():
        for path in paths:
            seed = seed_label(path)
            for r in loss_plateaus(path, window, flat_ratio).itertuples():
                flat = "**no**" if r.flat == "no" else r.flat
                lines.append(f"| {display_name(variant)} | {seed} | {r.series} | {r.epochs} | {num(r.lr, '{:g}')} | "
                             f"{num(r.first, '{:.3f}')} | {num(r.before, '{:.3f}')} | {num(r.last, '{:.3f}')} | "
                             f"{num(r.rate_ratio, '{:.2f}')} | {flat} |")
    return "\n".join(lines) + "\n"
