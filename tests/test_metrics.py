"""Metrics against independent computations (sklearn, numpy by hand)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, precision_recall_curve

from wslbench.metrics import classification_error, dice, f1_pos_neg, interpolated_pr, precision_recall

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("p_fg", [0.1, 0.5, 0.9])
def test_dice_equals_sklearn_f1_on_random_masks(p_fg):
    pred = RNG.random((17, 23)) < p_fg
    target = RNG.random((17, 23)) < 0.4
    f1p, f1n = f1_pos_neg(pred, target)
    assert f1p == pytest.approx(f1_score(target.ravel(), pred.ravel()))
    assert f1n == pytest.approx(f1_score(~target.ravel(), ~pred.ravel()))
    assert dice(torch.from_numpy(pred), torch.from_numpy(target)) == pytest.approx(f1p)  # torch input


def test_empty_and_full_masks():
    empty, full = np.zeros((4, 4), bool), np.ones((4, 4), bool)
    assert f1_pos_neg(empty, empty) == (1.0, 1.0)  # no foreground anywhere: both agree
    assert dice(empty, empty) == 1.0 and dice(full, full) == 1.0
    assert dice(full, empty) == 0.0
    target = np.zeros((4, 4), bool)
    target[:2] = True  # half the image
    # All-ones: F1+ = 2 * 8 / (16 + 8), F1- = 0 (no predicted background)
    assert f1_pos_neg(full, target) == pytest.approx((2 / 3, 0.0))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        dice(np.zeros((2, 3)), np.zeros((3, 2)))


def test_classification_error_percent():
    assert classification_error([0, 1, 1, 0], [0, 1, 0, 0]) == pytest.approx(25.0)


def test_precision_recall_points_match_sklearn():
    scores = np.round(RNG.random(200), 2)  # ties on purpose
    target = RNG.random(200) < 0.3
    p, r = precision_recall(scores, target)
    sp, sr, _ = precision_recall_curve(target, scores)
    # sklearn: increasing thresholds with the (1, 0) end point appended; ours: decreasing thresholds
    np.testing.assert_allclose(p, sp[:-1][::-1])
    np.testing.assert_allclose(r, sr[:-1][::-1])


def test_interpolated_precision_by_hand():
    # scores 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg): points (p, r) = (1, .5), (.5, .5), (2/3, 1), (.5, 1)
    curve = interpolated_pr(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0], bool), grid=np.array([0, 0.25, 0.5, 0.75, 1.0]))
    np.testing.assert_allclose(curve, [1, 1, 1, 2 / 3, 2 / 3])
    assert interpolated_pr(np.ones(3), np.zeros(3, bool)) is None
