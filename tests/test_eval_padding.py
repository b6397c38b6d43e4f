"""Evaluation padding to a multiple of 32 (the authors' loader.py force_div_32): the cropped
prediction has the image's size and stays aligned with what the image shows."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from wslbench.errors import ConfigError
from wslbench.eval_padding import crop_to_box, pad_to_multiple, split_padding
from wslbench.evaluate import predict_dataset
from wslbench.methods import Prediction


class ThresholdChannel0(torch.nn.Module):
    """A 'method' whose map is its input's channel 0 thresholded; records the sizes it saw."""

    classifies = True

    def __init__(self):
        super().__init__()
        self.seen = []

    def predict(self, images):
        self.seen.append(tuple(images.shape[-2:]))
        return Prediction(logits=torch.zeros(images.shape[0], 2), maps=(images[:, 0] > 0.5).float())


class OneImage(torch.utils.data.Dataset):
    transform = SimpleNamespace(normalize=SimpleNamespace(transforms=[None, SimpleNamespace(mean=(0, 0, 0), std=(1, 1, 1))]))
    split = "test"

    def __init__(self, image, mask):
        self.image, self.mask = image, mask

    def __len__(self):
        return 1

    def __getitem__(self, i):
        return {"image": self.image, "mask": self.mask, "label": 0, "id": "img0", "index": 0}


def test_split_padding_puts_the_odd_pixel_after():
    # the authors' loader.get_padding: leftover // 2 before, the rest after
    assert split_padding(45, 32) == (9, 10) and split_padding(64, 32) == (0, 0) and split_padding(33, 32) == (15, 16)


def test_hand_placed_square_stays_aligned_after_pad_and_crop():
    h, w = 45, 71  # odd sizes: 19 + 25 = 64 rows (9 top, 10 bottom), 25 = 96 - 71 columns (12 left, 13 right)
    image = torch.zeros(3, h, w)
    image[0, 10:20, 50:62] = 1.0  # the square, near the right edge
    mask = torch.zeros(h, w, dtype=torch.uint8)
    mask[10:20, 50:62] = 1
    method = ThresholdChannel0()
    (p,) = predict_dataset(method, OneImage(image, mask), torch.device("cpu"), amp=False, pad_multiple=32)
    assert method.seen == [(64, 96)]  # the method saw a padded image, both sides multiples of 32
    assert p.prob.shape == (h, w)
    np.testing.assert_array_equal(p.prob > 0.5, mask.numpy().astype(bool))
    (q,) = predict_dataset(method, OneImage(image, mask), torch.device("cpu"), amp=False)  # off: unchanged
    assert method.seen[-1] == (h, w) and np.array_equal(q.prob, p.prob)


def test_reflect_padding_matches_numpy_even_beyond_the_image_side():
    x = torch.arange(2 * 3 * 5 * 4, dtype=torch.float64).view(2, 3, 5, 4)  # pads (13, 14) > side 5, (14, 14) > 4
    padded, box = pad_to_multiple(x, 32)
    top, bottom = split_padding(5, 32)
    left, right = split_padding(4, 32)
    expected = np.pad(x.numpy(), ((0, 0), (0, 0), (top, bottom), (left, right)), mode="reflect")
    np.testing.assert_array_equal(padded.numpy(), expected)
    assert box == (top, left, 5, 4)
    torch.testing.assert_close(crop_to_box(padded, box), x)


def test_bad_pad_multiple_is_a_config_error():
    with pytest.raises(ConfigError, match="pad_multiple"):
        pad_to_multiple(torch.zeros(1, 3, 4, 4), -32)
    with pytest.raises(ConfigError, match="pad_multiple"):
        pad_to_multiple(torch.zeros(1, 3, 4, 4), 3.5)


def test_paper_configs_pad_evaluation_images_to_32_and_synthetic_does_not():
    from wslbench.config import resolve

    for dataset in ("glas", "cub", "cub5", "oxf"):
        assert resolve("cam-avg", dataset).eval["pad_multiple"] == 32
    assert resolve("cam-avg", "synthetic").eval.get("pad_multiple", 0) == 0
