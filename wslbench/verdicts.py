"""Verdicts with their uncertainty: which rows of a table column the data cannot tell apart.

A table cell is a mean over seeds of a mean over test images. Its uncertainty has both sources,
so the bootstrap resamples both: seeds with replacement, then test images with replacement,
and the statistic of a row in one resample is the mean over the drawn seeds of the mean over
the drawn images. Every row of a column is resampled with the *same* draws (the same seed
positions, the same image ids), so the difference between two rows is paired: an image that is
hard for every method moves both rows together and does not widen their difference.

- The interval of a cell is the 95% percentile interval of its resampled statistic.
- The tied-best set of a column: the contender with the best mean, and every contender whose
  paired difference to it has a two-sided percentile interval (at ``LEVEL``) that holds 0.
- A score that pools pixels over images (PxAP) has no per-image value: its resample draws seeds
  only (the caption says so). A row whose record has no per-image scores does the same.
- The resampling seed is fixed, so tables are reproducible byte for byte.

scipy.stats.bootstrap resamples one level (or paired samples of one level); this resample is
two-level (seeds, then images) and shared across rows, so it is written here with numpy.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

#: two-sided level of the paired test and 1 - coverage of the intervals
LEVEL = 0.05
#: bootstrap resamples per table column
RESAMPLES = 2000
#: the resampling seed: the same draws every time the tables are built
RESAMPLING_SEED = 0


@dataclass
class RowScores:
    """One row of one column: per seed, the per-image scores by image id (a one-entry Series
    keyed ``None`` for a pooled score, which then resamples seeds only)."""

    per_seed: list[pd.Series]

    @property
    def pooled(self) -> bool:
        return any(len(s) == 1 and s.index[0] is None for s in self.per_seed)

    def point(self) -> float:
        return float(np.mean([np.nanmean(s.to_numpy(float)) for s in self.per_seed]))


@dataclass
class Verdict:
    """The column's verdict: per row, its interval (None: no scores) and whether it is tied with
    the best; ``best`` is the index of the best contender (None when there is none)."""

    intervals: list[tuple[float, float] | None]
    tied: list[bool]
    best: int | None


class Draws:
    """The shared resample of a column: uniform numbers turned into seed positions for a row's
    own number of seeds (same count: same positions, so rows pair) and image positions."""

    def __init__(self, max_seeds: int, image_ids: list, resamples: int = RESAMPLES, seed: int = RESAMPLING_SEED):
        rng = np.random.default_rng(seed)
        self.seed_u = rng.random((resamples, max(max_seeds, 1)))
        self.image_ids = list(image_ids)
        self.image_pos = rng.integers(0, max(len(self.image_ids), 1), size=(resamples, max(len(self.image_ids), 1)))

    def statistic(self, row: RowScores) -> np.ndarray:
        """The row's statistic in every resample, shape (resamples,)."""
        n = len(row.per_seed)
        seeds = np.minimum((self.seed_u[:, :n] * n).astype(int), n - 1)  # (B, n)
        if row.pooled or not self.image_ids:
            values = np.array([np.nanmean(s.to_numpy(float)) for s in row.per_seed])
            return values[seeds].mean(axis=1)
        # (n_seeds, n_images) aligned on the column's image ids (an image a seed lacks is NaN)
        table = np.stack([s.reindex(self.image_ids).to_numpy(float) for s in row.per_seed])
        grand, seed_eff, image_eff, resid = two_way_parts(table)
        with _quiet():
            drawn_resid = resid[seeds[:, :, None], self.image_pos[:, None, :]]  # (B, n, images)
            return (grand + seed_eff[seeds].mean(axis=1) + np.nanmean(image_eff[self.image_pos], axis=1)
                    + np.nanmean(drawn_resid, axis=(1, 2)))


def two_way_parts(table: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """A seeds x images score table as grand mean + seed effects + image effects + residuals,
    rescaled so that a bootstrap drawing seeds and images (with replacement, independently) has
    the variance of the mean the data imply, sigma_s^2/S + sigma_i^2/N + sigma_e^2/(SN).

    Why: seeds and test images are crossed (every seed scores the same images). Drawing the raw
    table's seeds and images counts the residual noise three times (it is in the seed means, in
    the image means and in the cells; McCullagh 2000, "Resampling and exchangeable arrays"), which
    makes every row look tied. The seed and image effects are shrunk to their variance components
    (moment estimates of the two-way layout) and all three parts reflated by n/(n-1), as in the
    shrunken residual bootstrap of multilevel models (Carpenter, Goldstein & Rasbash 2003)."""
    with _quiet():
        grand = float(np.nanmean(table))
        seed_eff = np.nanmean(table, axis=1) - grand
        image_eff = np.nanmean(table, axis=0) - grand
        resid = table - grand - seed_eff[:, None] - image_eff[None, :]
    s, n = table.shape
    if s < 2 or n < 2:  # one seed: its images only (one image: its seeds only); nothing to separate
        return grand, seed_eff * _reflate(s), image_eff * _reflate(n), np.zeros_like(table)
    images = int(np.isfinite(image_eff).sum())
    cells = int(np.isfinite(resid).sum())
    ss_e = float(np.nansum(resid ** 2))
    ms_e = ss_e / max(cells - s - images + 1, 1)  # residual mean square: sigma_e^2
    var_s = float(np.nansum(seed_eff ** 2)) / (s - 1)  # sigma_s^2 + sigma_e^2 / N
    var_i = float(np.nansum(image_eff ** 2)) / max(images - 1, 1)  # sigma_i^2 + sigma_e^2 / S
    shrink_s = np.sqrt(max(var_s - ms_e / images, 0.0) / var_s) if var_s > 0 else 0.0
    shrink_i = np.sqrt(max(var_i - ms_e / s, 0.0) / var_i) if var_i > 0 else 0.0
    scale_e = np.sqrt(ms_e / (ss_e / cells)) if ss_e > 0 else 0.0  # residuals with variance sigma_e^2
    return grand, seed_eff * shrink_s * _reflate(s), image_eff * shrink_i * _reflate(images), resid * scale_e


def _reflate(n: int) -> float:
    """sqrt(n / (n - 1)): the bootstrap variance of a mean of n draws is (n-1)/n of the unbiased one."""
    return float(np.sqrt(n / (n - 1))) if n > 1 else 0.0


@contextmanager
def _quiet():
    """Silence numpy's 'mean of empty slice' and invalid-value warnings (an all-NaN draw gives NaN,
    which is then ignored)."""
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", category=RuntimeWarning)
        yield


def column_draws(rows: list[RowScores | None], resamples: int = RESAMPLES, seed: int = RESAMPLING_SEED) -> Draws:
    """The shared resample of a column's rows (the same rows' columns get the same draws)."""
    present = [r for r in rows if r is not None]
    ids = sorted({i for r in present if not r.pooled for s in r.per_seed for i in s.index})
    return Draws(max((len(r.per_seed) for r in present), default=1), ids, resamples, seed)


def column_verdict(rows: list[RowScores | None], contenders: list[bool], lower_is_better: bool,
                   level: float = LEVEL, resamples: int = RESAMPLES, seed: int = RESAMPLING_SEED) -> Verdict:
    """Intervals and the tied-best set of one column. ``rows[i]`` None: no scores in that cell.
    ``contenders[i]`` False: the row is never best nor bold (a constant map, pixel labels, fewer
    seeds than the other rows)."""
    stats, points = column_statistics(rows, resamples, seed)
    return tied_best(stats, points, contenders, lower_is_better, level)


def column_statistics(rows: list[RowScores | None], resamples: int = RESAMPLES, seed: int = RESAMPLING_SEED
                      ) -> tuple[list[np.ndarray | None], list[float | None]]:
    """Each row's resampled statistic (the column's shared draws) and its point estimate."""
    draws = column_draws(rows, resamples, seed)
    return ([None if r is None else draws.statistic(r) for r in rows],
            [None if r is None else r.point() for r in rows])


def tied_best(stats: list[np.ndarray | None], points: list[float | None], contenders: list[bool],
              lower_is_better: bool, level: float = LEVEL) -> Verdict:
    """The tied-best set from resampled statistics that share their draws (see the module doc)."""
    intervals = [None if s is None else _interval(s, level) for s in stats]
    eligible = [i for i, (s, p, c) in enumerate(zip(stats, points, contenders)) if c and s is not None and p is not None]
    tied = [False] * len(stats)
    if not eligible:
        return Verdict(intervals, tied, None)
    sign = -1.0 if lower_is_better else 1.0
    best = max(eligible, key=lambda i: (sign * points[i], -i))
    for i in eligible:
        if i == best or np.isclose(points[i], points[best]):
            tied[i] = True
            continue
        diff = sign * (stats[best] - stats[i])  # > 0 where the best row is better in that resample
        diff = diff[np.isfinite(diff)]
        tied[i] = bool(diff.size) and float(np.quantile(diff, level / 2)) <= 0.0
    return Verdict(intervals, tied, best)


def _interval(stat: np.ndarray, level: float) -> tuple[float, float] | None:
    s = stat[np.isfinite(stat)]
    if not s.size:
        return None
    return float(np.quantile(s, level / 2)), float(np.quantile(s, 1 - level / 2))


# --- per-image scores of run records ------------------------------------------------------

#: the per-image column of per_image.csv behind each table metric (None: pooled, seeds only)
PER_IMAGE = {"f1_pos": "f1_pos", "f1_neg": "f1_neg", "crf_f1_pos": "crf_f1_pos", "crf_f1_neg": "crf_f1_neg",
             "auc_f1_pos": "auc_f1_pos", "auc_f1_neg": "auc_f1_neg", "cls_error": "error"}


class PerImage:
    """per_image.csv of run folders, read once each."""

    def __init__(self):
        self._frames: dict[str, pd.DataFrame | None] = {}

    def frame(self, path: str | Path) -> pd.DataFrame | None:
        key = str(path)
        if key not in self._frames:
            try:
                f = pd.read_csv(Path(path) / "per_image.csv", dtype={"id": str}).set_index("id")
                if {"label", "pred_label"} <= set(f.columns):
                    # percent, as the tables show classification error; NaN where nothing is predicted
                    f["error"] = np.where(f["pred_label"].isna(), np.nan, (f["label"] != f["pred_label"]) * 100.0)
                self._frames[key] = f
            except (OSError, ValueError, KeyError, pd.errors.ParserError):
                self._frames[key] = None
        return self._frames[key]

    def scores(self, path: str | Path, metric: str, value: float | None, scale: float) -> pd.Series | None:
        """The run's per-image scores of ``metric`` (scaled as the table shows them), or its single
        value keyed None when the metric pools images or the record has no per-image column."""
        if value is None or pd.isna(value):
            return None
        column = PER_IMAGE.get(metric)
        f = self.frame(path) if column else None
        if f is not None and column in f.columns:
            s = f[column].astype(float)
            if metric != "cls_error":
                s = s * scale
            # the per-image mean must be the recorded score; else (another definition) use the score
            if np.isclose(np.nanmean(s.to_numpy()), float(value) * scale, atol=1e-6 * max(1.0, scale)):
                return s
        return pd.Series([float(value) * scale], index=pd.Index([None], dtype=object))
