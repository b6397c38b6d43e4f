"""The bootstrap behind the tables' intervals and bold (wslbench.verdicts), checked against
independent computations (scipy.stats.bootstrap, exact enumeration, the normal approximation)
and on synthetic scores whose answer is known."""
import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from wslbench.verdicts import Draws, RowScores, column_draws, column_verdict


def row(*seeds):
    """A row from per-seed arrays of per-image scores (ids img0, img1, ...)."""
    return RowScores([pd.Series(np.asarray(v, float), index=[f"img{i}" for i in range(len(v))]) for v in seeds])


def pooled(*values):
    return RowScores([pd.Series([float(v)], index=pd.Index([None], dtype=object)) for v in values])


def test_one_seed_interval_matches_scipy_percentile_bootstrap():
    scores = np.random.default_rng(3).normal(0.6, 0.15, size=200)
    (lo, hi), = column_verdict([row(scores)], [True], lower_is_better=False, resamples=4000).intervals
    ref = stats.bootstrap((scores,), np.mean, n_resamples=4000, method="percentile", confidence_level=0.95,
                          random_state=np.random.default_rng(7)).confidence_interval
    se = scores.std(ddof=1) / np.sqrt(scores.size)
    # two Monte Carlo runs of one percentile interval: they agree to a small part of the standard error
    assert lo == pytest.approx(ref.low, abs=0.15 * se)
    assert hi == pytest.approx(ref.high, abs=0.15 * se)
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.1)  # and the normal approximation


def test_pooled_scores_resample_seeds_only_exact_enumeration():
    draws = column_draws([pooled(1, 2, 3)], resamples=20000)
    got = draws.statistic(pooled(1, 2, 3))
    means = np.array([np.mean(c) for c in itertools.product([1, 2, 3], repeat=3)])  # 27 equally likely draws
    for value in np.unique(means):
        assert np.mean(np.isclose(got, value)) == pytest.approx(np.mean(means == value), abs=0.01)


def _crossed(rng, s_seed, s_image, s_resid, n_seeds=3, n_images=80):
    return (0.5 + rng.normal(0, s_seed, (n_seeds, 1)) + rng.normal(0, s_image, (1, n_images))
            + rng.normal(0, s_resid, (n_seeds, n_images)))


@pytest.mark.parametrize("s_seed,s_image,s_resid", [(0.0, 0.0, 0.15), (0.03, 0.1, 0.05), (0.05, 0.0, 0.1)])
def test_resampled_variance_is_the_crossed_layouts_variance_of_the_mean(s_seed, s_image, s_resid):
    """Averaged over many tables drawn from a seeds x images layout with known variance parts,
    the bootstrap variance of a row's statistic is sigma_s^2/S + sigma_i^2/N + sigma_e^2/(SN),
    the variance of the grand mean across repeated experiments (computed here by formula); the
    raw draw of cells would count the residual about three times. Within 35%: a variance part
    that is truly 0 is estimated at max(estimate, 0), which comes back slightly positive."""
    rng = np.random.default_rng(5)
    n_seeds, n_images = 3, 80
    target = s_seed ** 2 / n_seeds + s_image ** 2 / n_images + s_resid ** 2 / (n_seeds * n_images)
    boot, raw = [], []
    for k in range(40):
        table = _crossed(rng, s_seed, s_image, s_resid)
        d = Draws(n_seeds, [f"img{i}" for i in range(n_images)], resamples=400, seed=k)
        boot.append(d.statistic(row(*table)).var())
        seeds = np.minimum((d.seed_u * n_seeds).astype(int), n_seeds - 1)
        raw.append(table[seeds[:, :, None], d.image_pos[:, None, :]].mean(axis=(1, 2)).var())
    assert 0.8 * target < np.mean(boot) < 1.35 * target
    if s_seed == 0 and s_image == 0:
        assert np.mean(raw) > 1.8 * target


def test_the_statistic_is_centred_on_the_rows_mean():
    table = _crossed(np.random.default_rng(2), 0.05, 0.1, 0.05)
    got = Draws(3, [f"img{i}" for i in range(80)], resamples=4000).statistic(row(*table))
    assert got.mean() == pytest.approx(table.mean(), abs=0.004)


def test_draws_pair_rows_by_image_id_not_by_position():
    a = RowScores([pd.Series([1.0, 2.0, 3.0], index=["x", "y", "z"])])
    b = RowScores([pd.Series([3.0, 1.0, 2.0], index=["z", "x", "y"])])  # the same scores, listed in another order
    d = column_draws([a, b])
    np.testing.assert_array_equal(d.statistic(a), d.statistic(b))


def _trial(seed: int, shift_in_se: float) -> bool:
    """Two methods, 3 seeds x 80 images each, independent N(0.6, 0.15) scores; the second shifted
    down by ``shift_in_se`` standard errors of the difference of the two means. True: tied."""
    rng = np.random.default_rng(1000 + seed)
    n_seeds, n_images, sd = 3, 80, 0.15
    se_diff = sd * np.sqrt(2 / (n_seeds * n_images))
    a = rng.normal(0.6, sd, size=(n_seeds, n_images))
    b = rng.normal(0.6 - shift_in_se * se_diff, sd, size=(n_seeds, n_images))
    v = column_verdict([row(*a), row(*b)], [True, True], lower_is_better=False, resamples=1000, seed=seed)
    return all(v.tied)


def test_same_distribution_is_declared_tied_in_at_least_90_percent_of_trials():
    tied = [_trial(s, 0.0) for s in range(60)]
    assert np.mean(tied) >= 0.90


def test_a_shift_of_four_standard_errors_is_declared_different_in_at_least_90_percent():
    tied = [_trial(s, 4.0) for s in range(60)]
    assert np.mean(tied) <= 0.10


def test_pairing_separates_a_small_constant_shift_that_image_variance_hides():
    scores = np.random.default_rng(0).uniform(0.1, 0.9, size=(3, 60))  # images differ a lot, as on GlaS
    better, worse = row(*scores), row(*(scores - 0.01))  # worse by 0.01 on every single image
    v = column_verdict([better, worse], [True, True], lower_is_better=False)
    assert v.best == 0 and v.tied == [True, False]
    (lo0, hi0), (lo1, hi1) = v.intervals
    assert lo0 < hi1  # the intervals overlap: only the paired difference tells them apart


def test_lower_is_better_and_non_contenders_are_never_best_or_tied():
    low, high = row(np.full(20, 1.0)), row(np.full(20, 9.0))
    v = column_verdict([high, low, None], [True, False, True], lower_is_better=True)
    assert v.best == 0 and v.tied == [True, False, False] and v.intervals[2] is None
    v = column_verdict([high, low], [True, True], lower_is_better=True)
    assert v.best == 1 and v.tied == [False, True]
