"""Dense CRF: a noisy probability map of a coloured region is pulled towards the region."""
from __future__ import annotations

import numpy as np
import pytest

from wslbench.crf import refine, refine_many
from wslbench.metrics import dice


def noisy_scene(seed=0, h=48, w=56):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    truth = (yy - h / 2) ** 2 + (xx - w / 2.5) ** 2 < 14 ** 2
    image = np.where(truth[..., None], [190, 70, 60], [50, 90, 190]).astype(float)
    image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
    prob = np.clip(np.where(truth, 0.62, 0.38) + rng.normal(0, 0.25, truth.shape), 0, 1)
    return image, prob, truth


def test_crf_refines_noisy_map_towards_region():
    image, prob, truth = noisy_scene()
    before = dice(prob >= 0.5, truth)
    after = refine(image, prob, iterations=5, gaussian_sxy=3, bilateral_sxy=13, bilateral_srgb=10)
    assert after.shape == prob.shape and 0 <= after.min() and after.max() <= 1
    assert dice(after >= 0.5, truth) > before + 0.2


def test_refine_many_parallel_equals_serial():
    scenes = [noisy_scene(s)[:2] for s in range(4)]
    serial = refine_many(scenes, workers=1, iterations=2)
    parallel = refine_many(scenes, workers=2, iterations=2)
    for a, b in zip(serial, parallel):
        np.testing.assert_allclose(a, b)


def test_size_mismatch_raises():
    with pytest.raises(ValueError):
        refine(np.zeros((4, 4, 3), np.uint8), np.zeros((5, 5)))
