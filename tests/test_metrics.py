"""Metrics against independent computations (sklearn, numpy by hand)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, precision_recall_curve

from wslbench.metrics import classification_error, dice, f1_pos_neg, interpolated_pr, mean_score, precision_recall

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
    # both empty: 0/0, undefined (NaN, the authors' compute_dice_index), not 1 and not sklearn's 0
    f1p, f1n = f1_pos_neg(empty, empty)
    assert np.isnan(f1p) and f1n == 1.0  # the backgrounds (both full) agree
    assert np.isnan(dice(empty, empty)) and dice(full, full) == 1.0
    assert dice(full, empty) == 0.0 and dice(empty, full) == 0.0
    assert np.isnan(f1_pos_neg(full, full)[1])  # no background anywhere: F1- undefined
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


def test_mean_score_leaves_undefined_images_out_and_counts_them():
    assert mean_score([0.5, float("nan"), 1.0, float("nan")]) == (0.75, 2)
    assert mean_score([0.2, 0.4]) == (pytest.approx(0.3), 0)
    assert mean_score([float("nan")]) == (None, 1)


def test_evaluation_records_images_with_both_masks_empty(tmp_path):
    """Two images: one whose truth and prediction are both empty, one scored normally by hand."""
    import json
    from types import SimpleNamespace

    import pandas as pd

    from wslbench.evaluate import evaluate
    from wslbench.methods import Prediction

    masks = [torch.zeros(4, 4, dtype=torch.uint8), torch.zeros(4, 4, dtype=torch.uint8)]
    masks[1][:2] = 1  # 8 pixels
    preds = [torch.zeros(4, 4), torch.zeros(4, 4)]
    preds[1][:1] = 1.0  # 4 pixels, all inside: F1+ = 2 * 4 / (4 + 8), F1- = 2 * 8 / (12 + 8)

    class Fixed(torch.nn.Module):
        classifies, crf_applicable = True, False

        def predict(self, images):
            i = int(images[0, 0, 0, 0])
            return Prediction(logits=torch.zeros(1, 2), maps=preds[i][None])

    class Two(torch.utils.data.Dataset):
        split = "test"
        transform = SimpleNamespace(normalize=SimpleNamespace(transforms=[None, SimpleNamespace(mean=(0, 0, 0), std=(1, 1, 1))]))

        def __len__(self):
            return 2

        def __getitem__(self, i):
            return {"image": torch.full((3, 4, 4), float(i)), "mask": masks[i], "label": 0, "id": f"im{i}"}

    ev = evaluate(Fixed(), Two(), tmp_path, torch.device("cpu"), amp=False, save_masks=False)
    assert ev["n_empty_both"] == {"f1_pos": 1, "f1_neg": 0}
    assert ev["f1_pos"] == pytest.approx(2 / 3)  # the empty image is left out, not counted as 1 or 0
    assert ev["f1_neg"] == pytest.approx((1.0 + 0.8) / 2)  # image 0's backgrounds agree: 1
    assert json.loads((tmp_path / "eval.json").read_text())["n_empty_both"]["f1_pos"] == 1
    per = pd.read_csv(tmp_path / "per_image.csv")
    assert per["empty_both_pos"].tolist() == [1, 0] and per["empty_both_neg"].tolist() == [0, 0]
    assert np.isnan(per["f1_pos"][0])
