"""Spatial pooling math against numpy / hand computations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from wslbench.methods.maps import localization_map, minmax_normalize
from wslbench.methods.pooling import WildcatHead, avg_pool, class_wise_pool, lse_pool, max_pool, wildcat_pool

RNG = np.random.default_rng(0)
X = RNG.normal(size=(2, 3, 4, 5)).astype(np.float64)


def test_avg_and_max_pool_match_numpy():
    t = torch.tensor(X)
    np.testing.assert_allclose(avg_pool(t).numpy(), X.mean(axis=(2, 3)), rtol=1e-12)
    np.testing.assert_allclose(max_pool(t).numpy(), X.max(axis=(2, 3)), rtol=1e-12)


def test_lse_pool_formula_and_limits():
    t = torch.tensor(X)
    r = 2.5
    expected = np.log(np.exp(r * X).mean(axis=(2, 3))) / r
    np.testing.assert_allclose(lse_pool(t, r).numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(lse_pool(t, 1e4).numpy(), X.max(axis=(2, 3)), atol=2e-3)  # r -> inf: max
    np.testing.assert_allclose(lse_pool(t, 1e-6).numpy(), X.mean(axis=(2, 3)), atol=1e-5)  # r -> 0: mean


def test_lse_pool_does_not_overflow_on_large_activations():
    big = torch.full((1, 1, 3, 3), 1000.0, dtype=torch.float32)
    big[0, 0, 0, 0] = 1010.0
    out = lse_pool(big, r=10.0)
    # by hand: 1010 + log((e^0 + 8 e^-100) / 9) / 10 = 1010 - log(9) / 10
    assert torch.isfinite(out).all()
    assert out.item() == pytest.approx(1010 - np.log(9) / 10, abs=1e-3)


def test_wildcat_pool_topk_bottomk_by_hand():
    """The official formula (durandtibo/wildcat.pytorch, WildcatPool2dFunction.forward):
    (mean top-kmax + alpha * mean bottom-kmin) / 2 when kmin > 0 and alpha != 0, else the top mean."""
    m = torch.arange(10, dtype=torch.float64).view(1, 1, 2, 5)  # values 0..9
    # kmax = 3 -> mean(9, 8, 7) = 8; kmin = 2 -> mean(0, 1) = 0.5; alpha 0.7: (8 + 0.35) / 2
    assert wildcat_pool(m, kmax=3, kmin=2, alpha=0.7).item() == pytest.approx(4.175)
    # fractions of the 10 locations: kmax .2 -> 2 (9, 8), kmin .3 -> 3 (0, 1, 2): (8.5 + 1.0) / 2
    assert wildcat_pool(m, kmax=0.2, kmin=0.3, alpha=1.0).item() == pytest.approx(4.75)
    # no negative evidence: the top mean alone, not halved (alpha = 0, or kmin = 0)
    assert wildcat_pool(m, kmax=1, kmin=1, alpha=0.0).item() == pytest.approx(9.0)
    assert wildcat_pool(m, kmax=2, kmin=0, alpha=0.7).item() == pytest.approx(8.5)
    # kmin defaults to kmax: kmax = kmin = 2 -> (8.5 + 0.7 * 0.5) / 2
    assert wildcat_pool(m, kmax=2, alpha=0.7).item() == pytest.approx(4.425)


def test_wildcat_pool_matches_numpy_on_random_maps():
    x = RNG.normal(size=(2, 3, 4, 5))
    flat = np.sort(x.reshape(2, 3, 20), axis=2)[..., ::-1]
    expected = (flat[..., :4].mean(2) + 0.6 * flat[..., -6:].mean(2)) / 2  # kmax .2 -> 4, kmin .3 -> 6
    np.testing.assert_allclose(wildcat_pool(torch.tensor(x), 0.2, 0.3, 0.6).numpy(), expected, rtol=1e-12)


def test_class_wise_pool_averages_modalities():
    t = torch.tensor(RNG.normal(size=(2, 6, 3, 3)))  # 2 classes x 3 modalities
    out = class_wise_pool(t, 2).numpy()
    np.testing.assert_allclose(out[:, 0], t.numpy()[:, 0:3].mean(1))
    np.testing.assert_allclose(out[:, 1], t.numpy()[:, 3:6].mean(1))


def test_wildcat_dropout_acts_only_in_training():
    head = WildcatHead(4, 2, modalities=2, kmax=0.5, alpha=0.0, dropout=0.9)
    f = torch.randn(3, 4, 4, 4)
    head.eval()
    a, maps = head(f)
    torch.testing.assert_close(a, wildcat_pool(maps, 0.5, None, 0.0))
    head.train()
    torch.manual_seed(0)
    assert not torch.allclose(head(f)[0], a)


def test_localization_map_is_predicted_class_map_normalised():
    cm = torch.zeros(1, 2, 2, 2)
    cm[0, 1] = torch.tensor([[1.0, 3.0], [5.0, 9.0]])
    logits = torch.tensor([[0.0, 1.0]])
    out = localization_map(cm, logits, (2, 2))  # same size: no interpolation
    np.testing.assert_allclose(out[0].numpy(), np.array([[0, 2], [4, 8]]) / 8.0, rtol=1e-6)
    assert minmax_normalize(torch.full((1, 3, 3), 2.0)).abs().max() == 0  # constant map -> 0
