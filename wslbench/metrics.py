"""Localization and classification metrics: the public API others can call on their own masks.

Dice = 2|P ∩ T| / (|P| + |T|); F1+ is the Dice of the foreground, F1- the Dice of the
background (complements).

Empty masks (one rule, everywhere): when the prediction and the truth are both empty, Dice is
0/0 and undefined. The min-max authors' code returns that 0/0 (NaN, tools.compute_dice_index);
sklearn's f1_score returns 0 by its zero_division convention; 1.0 would reward a model for an
image that has nothing to find. We keep the authors' value, NaN, per image, and average a set's
scores over the images where Dice is defined (``mean_score``), counting the others:
evaluation writes that count to eval.json as ``n_empty_both`` (per score) and flags the images
in per_image.csv, and the tables say when a score leaves any out. The data sets of the paper
have a region of interest in every test image, so F1+ never hits the rule with them; F1- does
only when both masks cover the whole image.
"""
from __future__ import annotations

import numpy as np
import torch


def _as_bool(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    return a.astype(bool) if a.dtype != bool else a


def dice(pred, target) -> float:
    """Dice of two boolean arrays (numpy or torch, any shape); NaN (undefined) when both are
    empty (see the module doc)."""
    p, t = _as_bool(pred), _as_bool(target)
    if p.shape != t.shape:
        raise ValueError(f"dice: shapes differ {p.shape} vs {t.shape}")
    inter = np.count_nonzero(p & t)
    total = np.count_nonzero(p) + np.count_nonzero(t)
    return float("nan") if total == 0 else 2.0 * inter / total


def mean_score(scores) -> tuple[float | None, int]:
    """(mean over the defined per-image scores, number of undefined ones). The mean is None
    when no score is defined."""
    v = np.asarray(list(scores), dtype=np.float64)
    undefined = int(np.isnan(v).sum())
    return (float(np.nanmean(v)) if undefined < v.size else None), undefined


def f1_pos_neg(pred, target) -> tuple[float, float]:
    """(F1+, F1-): Dice of the foreground and Dice of the background."""
    p, t = _as_bool(pred), _as_bool(target)
    return dice(p, t), dice(~p, ~t)


def classification_error(pred_labels, true_labels) -> float:
    """Classification error in percent."""
    p = np.asarray(pred_labels).reshape(-1)
    t = np.asarray(true_labels).reshape(-1)
    if p.shape != t.shape:
        raise ValueError(f"classification_error: {p.shape} predictions for {t.shape} labels")
    if t.size == 0:
        raise ValueError("classification_error: empty set")
    return 100.0 * float(np.mean(p != t))


RECALL_GRID = np.linspace(0.0, 1.0, 101)


def precision_recall(scores, target) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at every distinct score threshold (descending scores), the points
    sklearn's precision_recall_curve gives; None-free for a target with at least one positive."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    t = _as_bool(target).reshape(-1)
    order = np.argsort(-s, kind="stable")
    s, t = s[order], t[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # last index of each distinct score
    tp = np.cumsum(t)[last]
    fp = (last + 1) - tp
    return tp / (tp + fp), tp / max(int(t.sum()), 1)


def interpolated_pr(scores, target, grid: np.ndarray = RECALL_GRID) -> np.ndarray | None:
    """Interpolated precision on a common recall grid: p(r) = max precision at recall >= r.
    None when the target has no positive (recall undefined)."""
    if not _as_bool(target).any():
        return None
    precision, recall = precision_recall(scores, target)
    # running max from the high-recall end, then read it at the first point with recall >= r
    best = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, grid, side="left")
    out = np.zeros_like(grid, dtype=np.float64)
    ok = idx < recall.size
    out[ok] = best[idx[ok]]
    return out
