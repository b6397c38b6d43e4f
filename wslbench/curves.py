"""Threshold-free localization scores on a fixed grid of thresholds.

A map is binarised at every threshold ``t`` of a fixed grid (foreground = score >= t, the
same rule as the fixed-threshold evaluation). Everything below is computed from two
histograms per image, the scores of its foreground and of its background pixels, so any
number of thresholds costs one pass over the pixels:

- **PxAP** (Choe et al., CVPR 2020, wsolevaluation's ``MaskEvaluator``): the foreground and
  background histograms are pooled over all images; precision and recall of the foreground
  at every threshold, from the highest threshold down; AP = sum over thresholds of
  precision x (increase of recall), starting from recall 0. A constant map scores the
  foreground fraction, a perfect map 1.
- **F1+(t) and F1-(t)**: per image Dice of the foreground and of the background at every
  threshold, then averaged over images (the paper's F1 is per image); the area under each
  curve over t in [0, 1] (trapezoids) is a threshold-free summary.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: wsolevaluation's ``cam_curve_interval`` (evaluation.py, default 0.001): the grid step
CURVE_INTERVAL = 0.001


def threshold_grid(interval: float = CURVE_INTERVAL) -> np.ndarray:
    """Thresholds 0, interval, 2 interval, ..., 1 (both ends included)."""
    n = round(1.0 / interval)
    if n < 1 or not np.isclose(n * interval, 1.0):
        raise ValueError(f"curve interval must divide 1 (e.g. 0.001), got {interval}")
    return np.arange(n + 1, dtype=np.float64) / n


def counts_at_least(scores: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """How many of ``scores`` are >= each threshold of ``grid`` (ascending)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    n = grid.size - 1
    # bin k holds grid[k] <= s < grid[k+1] (the last bin: s >= grid[-1]); the uniform grid gives
    # the bin by one multiplication, then one comparison each way fixes rounding at the edges
    idx = np.clip(np.floor(s * n).astype(np.int64), 0, n)
    idx -= (idx > 0) & (grid[idx] > s)
    up = np.minimum(idx + 1, n)
    idx += (idx < n) & (grid[up] <= s)
    keep = s >= grid[0]
    hist = np.bincount(idx[keep], minlength=grid.size)
    return np.cumsum(hist[::-1])[::-1]


@dataclass
class ImageCounts:
    """Per threshold: foreground pixels predicted foreground (tp) and background pixels
    predicted foreground (fp); plus the totals."""

    tp: np.ndarray
    fp: np.ndarray
    n_pos: int
    n_neg: int


def image_counts(prob: np.ndarray, mask: np.ndarray, grid: np.ndarray) -> ImageCounts:
    mask = np.asarray(mask, dtype=bool)
    prob = np.asarray(prob)
    return ImageCounts(counts_at_least(prob[mask], grid), counts_at_least(prob[~mask], grid),
                       int(mask.sum()), int((~mask).sum()))


def _dice(inter: np.ndarray, total: np.ndarray) -> np.ndarray:
    """2 |P ∩ T| / (|P| + |T|), 1.0 where both are empty (the rule of wslbench.metrics.dice)."""
    inter, total = np.asarray(inter, dtype=np.float64), np.asarray(total, dtype=np.float64)
    out = np.ones_like(total)
    ok = total > 0
    out[ok] = 2.0 * inter[ok] / total[ok]
    return out


def dice_curves(c: ImageCounts) -> tuple[np.ndarray, np.ndarray]:
    """(F1+(t), F1-(t)) of one image at every threshold."""
    predicted_pos = c.tp + c.fp
    tn = c.n_neg - c.fp
    predicted_neg = c.n_pos + c.n_neg - predicted_pos
    return _dice(c.tp, predicted_pos + c.n_pos), _dice(tn, predicted_neg + c.n_neg)


def average_precision(tp: np.ndarray, fp: np.ndarray, n_pos: int) -> float | None:
    """AP of the foreground from counts at ascending thresholds (None without any positive)."""
    if n_pos <= 0:
        return None
    tp, fp = np.asarray(tp, dtype=np.float64)[::-1], np.asarray(fp, dtype=np.float64)[::-1]  # high -> low t
    recall = np.r_[0.0, tp / n_pos]
    predicted = tp + fp
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    return float(np.sum(precision * np.diff(recall)))


def pr_points(tp: np.ndarray, fp: np.ndarray, n_pos: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at every threshold (ascending t); precision NaN where nothing is predicted."""
    tp, fp = np.asarray(tp, dtype=np.float64), np.asarray(fp, dtype=np.float64)
    predicted = tp + fp
    precision = np.divide(tp, predicted, out=np.full_like(tp, np.nan), where=predicted > 0)
    recall = tp / n_pos if n_pos > 0 else np.full_like(tp, np.nan)
    return precision, recall


def area(curve: np.ndarray, grid: np.ndarray) -> float:
    """Area under ``curve`` over the thresholds (trapezoids); the grid spans [0, 1]."""
    y, x = np.asarray(curve, dtype=np.float64), np.asarray(grid, dtype=np.float64)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


@dataclass
class CurveAccumulator:
    """Collect images one at a time; ``summary`` gives PxAP, the mean Dice curves and their areas."""

    grid: np.ndarray = field(default_factory=threshold_grid)
    tp: np.ndarray | None = None
    fp: np.ndarray | None = None
    n_pos: int = 0
    f1_pos: list = field(default_factory=list)
    f1_neg: list = field(default_factory=list)

    def add(self, prob: np.ndarray, mask: np.ndarray) -> dict:
        """Add one image; returns its own threshold-free scores (for the per-image CSV)."""
        c = image_counts(prob, mask, self.grid)
        self.tp = c.tp.copy() if self.tp is None else self.tp + c.tp
        self.fp = c.fp.copy() if self.fp is None else self.fp + c.fp
        self.n_pos += c.n_pos
        pos, neg = dice_curves(c)
        self.f1_pos.append(pos)
        self.f1_neg.append(neg)
        ap = average_precision(c.tp, c.fp, c.n_pos)
        return {"ap": ap, "auc_f1_pos": area(pos, self.grid), "auc_f1_neg": area(neg, self.grid)}

    def mean_curves(self) -> tuple[np.ndarray, np.ndarray]:
        return np.mean(self.f1_pos, axis=0), np.mean(self.f1_neg, axis=0)

    def pxap(self) -> float | None:
        return None if self.tp is None else average_precision(self.tp, self.fp, self.n_pos)

    def summary(self) -> dict:
        pos, neg = self.mean_curves()
        return {"pxap": self.pxap(), "auc_f1_pos": area(pos, self.grid), "auc_f1_neg": area(neg, self.grid)}

    def table(self) -> dict[str, np.ndarray]:
        """Columns of threshold_curves.csv."""
        pos, neg = self.mean_curves()
        precision, recall = pr_points(self.tp, self.fp, self.n_pos)
        return {"threshold": self.grid, "f1_pos": pos, "f1_neg": neg, "precision": precision, "recall": recall}


def best_threshold(score: np.ndarray, grid: np.ndarray) -> float:
    """The threshold that maximises ``score``: the middle of the first run of maximal values
    (a plateau means every threshold in it binarises the images alike; its middle is the
    choice least tied to those particular images)."""
    score = np.asarray(score, dtype=np.float64)
    best = np.nanmax(score)
    at_max = np.isclose(score, best, rtol=0, atol=1e-12)
    start = int(np.argmax(at_max))
    end = start
    while end + 1 < at_max.size and at_max[end + 1]:
        end += 1
    return float(grid[(start + end) // 2])
