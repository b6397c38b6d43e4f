"""PxAP and the Dice-vs-threshold curves against independent computations (sklearn, the
fixed-threshold Dice, hand examples)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from wslbench.curves import CurveAccumulator, best_threshold, threshold_grid
from wslbench.metrics import f1_pos_neg


def _pxap(maps, masks):
    acc = CurveAccumulator()
    for p, m in zip(maps, masks):
        acc.add(p, m)
    return acc


def _random(seed, n=4, shape=(9, 13)):
    rng = np.random.default_rng(seed)
    masks = [rng.random(shape) < rng.uniform(0.1, 0.6) for _ in range(n)]
    maps = [np.clip(0.4 * m + 0.8 * rng.random(shape) - 0.1, 0, 1) for m in masks]
    return maps, masks


def test_pxap_equals_sklearn_on_pooled_pixels_when_scores_lie_on_the_grid():
    maps, masks = _random(0)
    maps = [np.floor(p * 1000) / 1000 for p in maps]  # on the grid: no binning error at all
    expected = average_precision_score(np.concatenate([m.ravel() for m in masks]),
                                       np.concatenate([p.ravel() for p in maps]))
    assert _pxap(maps, masks).pxap() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pxap_is_sklearn_within_the_binning_error_on_random_maps(seed):
    maps, masks = _random(seed)
    expected = average_precision_score(np.concatenate([m.ravel() for m in masks]),
                                       np.concatenate([p.ravel() for p in maps]))
    assert _pxap(maps, masks).pxap() == pytest.approx(expected, abs=5e-3)


def test_pxap_hand_examples():
    mask = np.zeros((4, 5), dtype=bool)
    mask[1:3, 1:4] = True  # 6 of 20 pixels
    assert _pxap([mask.astype(float)], [mask]).pxap() == 1.0  # perfect map
    assert _pxap([np.full((4, 5), 0.37)], [mask]).pxap() == pytest.approx(6 / 20)  # constant: fg fraction
    # two images pooled: constant maps -> pooled foreground fraction (6 + 2) / 40
    other = np.zeros((4, 5), dtype=bool)
    other[0, :2] = True
    assert _pxap([np.full((4, 5), 0.2), np.full((4, 5), 0.9)], [mask, other]).pxap() == pytest.approx(
        # t <= 0.2: everything predicted (P = 8/40, R = 1); 0.2 < t <= 0.9: image 2 only (P = 2/20, R = 2/8)
        0.1 * (2 / 8) + (8 / 40) * (6 / 8))
    # a hand-ranked map: scores 0.9 (fg), 0.8 (bg), 0.7 (fg), rest 0 (bg):  AP = 1*1/2 + 2/3*1/2
    m = np.array([True, False, True, False, False])
    assert _pxap([np.array([0.9, 0.8, 0.7, 0.0, 0.0])], [m]).pxap() == pytest.approx(0.5 + (2 / 3) * 0.5)


def test_dice_curves_match_fixed_threshold_dice_at_every_grid_point():
    maps, masks = _random(4, n=3)
    masks[1][:] = False  # an image without foreground: the empty-mask rule must agree too
    acc = _pxap(maps, masks)
    pos, neg = acc.mean_curves()
    grid = threshold_grid()
    for k in (0, 1, 137, 500, 999, 1000):
        f = [f1_pos_neg(p >= grid[k], m) for p, m in zip(maps, masks)]
        assert pos[k] == pytest.approx(np.mean([a for a, _ in f]), abs=1e-12)
        assert neg[k] == pytest.approx(np.mean([b for _, b in f]), abs=1e-12)


def test_area_under_the_dice_curve_of_a_ramp():
    # a 1-D ramp of 1000 pixel scores (i + 0.5) / 1000, foreground = the upper half:
    # F1+(t) = 2 * min(n_above, 500) / (n_above + 500), the area is computed independently below
    scores = (np.arange(1000) + 0.5) / 1000
    mask = scores >= 0.5
    acc = CurveAccumulator()
    row = acc.add(scores, mask)
    grid = threshold_grid()
    above = np.array([(scores >= t).sum() for t in grid])
    f1 = 2 * np.minimum(above, 500) / (above + 500)
    expected = float(np.trapezoid(f1, grid)) if hasattr(np, "trapezoid") else float(np.trapz(f1, grid))
    assert row["auc_f1_pos"] == pytest.approx(expected, abs=1e-12)
    assert acc.summary()["auc_f1_pos"] == pytest.approx(expected, abs=1e-12)
    assert row["ap"] == 1.0


def test_best_threshold_takes_the_middle_of_the_first_plateau():
    grid = np.linspace(0, 1, 11)
    score = np.array([0, 1, 2, 5, 5, 5, 5, 3, 5, 1, 0], dtype=float)
    assert best_threshold(score, grid) == pytest.approx(0.4)  # indices 3..6 -> 4 (first of the two middles)
    assert best_threshold(np.array([0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0.0]), grid) == pytest.approx(0.1)


def test_counts_at_least_is_exact_at_the_grid_edges():
    from wslbench.curves import counts_at_least

    grid = threshold_grid()
    rng = np.random.default_rng(7)
    scores = np.r_[grid, np.nextafter(grid, -1)[1:], np.nextafter(grid, 2)[:-1], rng.random(500), 0.0, 1.0]
    expected = np.array([(scores >= t).sum() for t in grid])
    np.testing.assert_array_equal(counts_at_least(scores, grid), expected)
    np.testing.assert_array_equal(counts_at_least(scores.astype(np.float32), grid),
                                  [(scores.astype(np.float32) >= t).sum() for t in grid])
