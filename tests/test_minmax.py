"""The min-max entropy model: each formula against a hand/numpy computation, the erasing
recursion's trust and stopping rules, and its step-by-step gradient accumulation."""
from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wslbench.errors import ConfigError
from wslbench.methods.minmax import (
    MinMax,
    negative_loss,
    positive_loss,
    posterior_weighted_map,
    pseudo_binary,
    trust_step,
)


def tiny_model(**kw) -> MinMax:
    torch.manual_seed(0)
    cfg = dict(backbone="test_resnet", pretrained=False, output_stride=16, dropout=0.0, erase_start_epoch=0)
    cfg.update(kw)
    return MinMax(num_classes=kw.pop("num_classes", 2), **cfg)


def batch(b=4, size=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(b, 3, size, size, generator=g), "label": torch.tensor([0, 1, 1, 0][:b])}


def grads(model):
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}


# --- losses -------------------------------------------------------------------------------------
@pytest.mark.parametrize("c", [2, 5])
def test_negative_loss_is_log_c_at_uniform_and_larger_elsewhere(c):
    uniform = torch.full((3, c), 0.7)  # equal scores: a uniform prediction
    assert negative_loss(uniform).item() == pytest.approx(math.log(c), abs=1e-6)
    rng = np.random.default_rng(0)
    s = rng.normal(size=(3, c)) * 3
    p = np.exp(s) / np.exp(s).sum(1, keepdims=True)
    expected = np.mean(-np.log(p).mean(axis=1))  # cross-entropy against the uniform distribution
    got = negative_loss(torch.tensor(s, dtype=torch.float32)).item()
    assert got == pytest.approx(expected, rel=1e-5)
    assert got > math.log(c) + 1e-3


def test_positive_loss_is_nll_of_true_class():
    s = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]])
    y = np.array([0, 1])
    p = np.exp(s) / np.exp(s).sum(1, keepdims=True)
    expected = -np.log(p[np.arange(2), y])
    got = positive_loss(torch.tensor(s), torch.tensor(y), reduction="none").numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert positive_loss(torch.tensor(s), torch.tensor(y)).item() == pytest.approx(expected.mean(), rel=1e-6)


# --- mask -----------------------------------------------------------------------------------------
def test_pseudo_binary_is_steep_sigmoid_of_normalised_map():
    m = torch.tensor([[[0.0, 1.0], [3.0, 4.0]]])  # min 0, max 4 -> 0, .25, .75, 1
    normed = np.array([[0.0, 0.25], [0.75, 1.0]])
    expected = 1.0 / (1.0 + np.exp(-8.0 * (normed - 0.5)))
    np.testing.assert_allclose(pseudo_binary(m, 8.0, 0.5)[0].numpy(), expected, rtol=1e-6)
    steep = pseudo_binary(m, omega=100.0, sigma=0.5)[0]
    assert steep[0, 0] < 1e-3 and steep[0, 1] < 1e-3  # below sigma -> ~0
    assert steep[1, 0] > 1 - 1e-3 and steep[1, 1] > 1 - 1e-3  # above sigma -> ~1


def test_pseudo_binary_batch_vs_image_normalisation():
    m = torch.stack([torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 2.0]])])  # (2, 1, 2)
    per_image = pseudo_binary(m, 8.0, 0.5, norm="image")
    whole = pseudo_binary(m, 8.0, 0.5, norm="batch")
    sig = lambda v: 1 / (1 + math.exp(-8 * (v - 0.5)))  # noqa: E731
    assert per_image[0, 0, 1].item() == pytest.approx(sig(1.0), rel=1e-6)
    assert whole[0, 0, 1].item() == pytest.approx(sig(0.5), rel=1e-6)  # 1 / max 2 over the batch
    assert whole[1, 0, 1].item() == pytest.approx(sig(1.0), rel=1e-6)


def test_aggregation_is_winning_map_when_posterior_is_one_hot():
    maps = torch.randn(2, 3, 4, 5)
    scores = torch.tensor([[0.0, 200.0, 0.0], [200.0, 0.0, 0.0]])
    out = posterior_weighted_map(scores, maps)
    torch.testing.assert_close(out[0], maps[0, 1])
    torch.testing.assert_close(out[1], maps[1, 0])
    soft = torch.tensor([[0.0, math.log(3.0)]])  # posterior (1/4, 3/4)
    two = torch.randn(1, 2, 3, 3)
    torch.testing.assert_close(posterior_weighted_map(soft, two)[0], 0.25 * two[0, 0] + 0.75 * two[0, 1])


# --- trust ---------------------------------------------------------------------------------------
def test_trust_hand_example_and_wrong_label_stays_zero():
    labels = torch.tensor([0, 1, 0])
    loss0 = torch.tensor([0.5, 0.5, 0.5])
    active = torch.ones(3)
    # t = 1: sample 0 right & better; sample 1 changes class; sample 2 right but loss grew
    probs = torch.tensor([[0.8, 0.2], [0.9, 0.1], [0.6, 0.4]])
    loss1 = torch.tensor([0.3, 2.3, 0.6])
    trust, active = trust_step(1, probs, labels, loss1, loss0, active, slope=10.0, rule="code")
    np.testing.assert_allclose(trust.numpy(), [math.exp(-0.1) * 0.8, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(active.numpy(), [1, 0, 1])
    # t = 2: every sample right again and better: sample 1 stays at 0 (wrong label is final),
    # sample 2 (only its loss was worse) is trusted again under the code's rule
    probs2 = torch.tensor([[0.7, 0.3], [0.2, 0.8], [0.9, 0.1]])
    loss2 = torch.tensor([0.1, 0.1, 0.1])
    trust2, active2 = trust_step(2, probs2, labels, loss2, loss0, active, slope=10.0, rule="code")
    np.testing.assert_allclose(trust2.numpy(), [math.exp(-0.2) * 0.7, 0.0, math.exp(-0.2) * 0.9], rtol=1e-6)
    np.testing.assert_allclose(active2.numpy(), [1, 0, 1])


def test_trust_paper_rule_any_zero_is_final():
    labels = torch.tensor([0, 0])
    loss0 = torch.tensor([0.5, 0.5])
    probs = torch.tensor([[0.8, 0.2], [0.7, 0.3]])
    trust, active = trust_step(1, probs, labels, torch.tensor([0.4, 0.9]), loss0, torch.ones(2), 10.0, rule="paper")
    assert trust[1] == 0 and active.tolist() == [1, 0]
    trust2, _ = trust_step(2, probs, labels, torch.tensor([0.1, 0.1]), loss0, active, 10.0, rule="paper")
    assert trust2[0] > 0 and trust2[1] == 0


def _force_localizer(model, winner: int):
    """Make f predict ``winner`` for every input (zero weights, biased modalities)."""
    conv = model.headseg.to_modalities
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([5.0 if c == winner else -5.0 for c in range(2) for _ in range(conv.out_channels // 2)]))


def test_recursion_stops_early_when_no_sample_is_trusted():
    model = tiny_model(erase_depth=4)
    b = batch()
    b["label"] = torch.zeros(4, dtype=torch.long)
    _force_localizer(model, winner=1)  # every sample wrong at t = 0 -> nobody trusted
    out = model.training_step(b)
    assert out["erase_steps"].item() == 1
    _force_localizer(model, winner=0)  # every sample right, loss constant -> all u steps
    assert model.training_step(b)["erase_steps"].item() == 4


def test_erased_region_is_the_trusted_mask():
    model = tiny_model(erase_depth=1)
    b = batch()
    m_acc, x1, _, steps = model.erase(b["image"], b["label"], backward=False)
    scores, _, cont = model.segment(b["image"])
    probs = F.softmax(scores, 1)
    p_top, pred = probs.max(1)
    trust = (pred == b["label"]).float() * p_top  # t = 0: psi = 1, loss check trivially true
    expected = trust.view(-1, 1, 1) * model.mask(cont)
    torch.testing.assert_close(m_acc, expected.detach())
    keep = (trust != 0).float().view(-1, 1, 1, 1)
    torch.testing.assert_close(x1, b["image"] * (1 - expected.unsqueeze(1)) * keep + b["image"] * (1 - keep))
    assert steps == 1


# --- training step ---------------------------------------------------------------------------------
def test_erase_depth_zero_is_the_plain_minmax_step():
    model = tiny_model(erase_depth=0, mask_norm="batch")
    ref = copy.deepcopy(model)
    b = batch()
    out = model.training_step(b)
    out["loss"].backward()
    # independent plain step: L_f + L+ + L- from the pieces, one backward
    x, y = b["image"], b["label"]
    scores_f, maps, _ = ref.segment(x)
    m = (scores_f.softmax(1)[:, :, None, None] * maps).sum(1, keepdim=True)
    m = F.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=True).detach()
    m = torch.sigmoid(8.0 * ((m - m.min()) / (m.max() - m.min()) - 0.5))
    sp, sn = ref.classify(x * m), ref.classify(x * (1 - m))
    loss = F.cross_entropy(scores_f, y) + F.cross_entropy(sp, y) - F.log_softmax(sn, 1).mean()
    loss.backward()
    assert out["loss"].item() == pytest.approx(loss.item(), rel=1e-5)
    assert out["erase_steps"].item() == 0
    g, gr = grads(model), grads(ref)
    for n in g:
        torch.testing.assert_close(g[n], gr[n], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("rule", ["paper", "code"])
def test_erasing_gradients_match_single_backward_reference(rule):
    u = 3
    model = tiny_model(erase_depth=u, weight_loc=0.7, weight_neg=1.3, trust_rule=rule)
    ref = copy.deepcopy(model)
    b = batch()
    out = model.training_step(b)
    out["loss"].backward()
    # reference: keep all u graphs, sum the losses, back-propagate once
    x0, y = b["image"], b["label"]
    x, m_acc, active, loss0, total = x0, torch.zeros(4, 64, 64), torch.ones(4), None, 0.0
    for t in range(u):
        if active.sum() == 0:
            break
        scores_f, _, cont = ref.segment(x)
        per = F.cross_entropy(scores_f, y, reduction="none")
        total = total + 0.7 * per.mean()
        loss0 = per.detach() if loss0 is None else loss0
        p = scores_f.detach().softmax(1)
        right = (p.argmax(1) == y).float()
        trust = math.exp(-t / 10.0) * right * (per.detach() <= loss0).float() * p.max(1).values * active
        active = torch.minimum(active, right) if rule == "code" else active * (trust != 0).float()
        m_acc = torch.maximum(m_acc, trust.view(-1, 1, 1) * ref.mask(cont))
        keep = (trust != 0).float().view(-1, 1, 1, 1)
        x = x * (1 - m_acc.unsqueeze(1)) * keep + x * (1 - keep)
    total = total + F.cross_entropy(ref.classify(x0 * m_acc.unsqueeze(1)), y)
    total = total - 1.3 * F.log_softmax(ref.classify(x0 * (1 - m_acc.unsqueeze(1))), 1).mean()
    total.backward()
    g, gr = grads(model), grads(ref)
    assert any(v.abs().sum() > 0 for v in g.values())
    for n in g:
        torch.testing.assert_close(g[n], gr[n], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("depth", [0, 2])
def test_no_gradient_reaches_localizer_head_from_classifier_losses(depth):
    model = tiny_model(erase_depth=depth, weight_loc=0.0)
    model.training_step(batch())["loss"].backward()
    for p in model.headseg.parameters():
        assert p.grad is None or p.grad.abs().max() == 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.cl32.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.trunk.parameters())


def test_predict_returns_classifier_logits_on_masked_image_and_mask():
    model = tiny_model().eval()
    x = batch()["image"]
    with torch.no_grad():
        pred = model.predict(x)
        _, _, cont = model.segment(x)
        m = pseudo_binary(cont, 8.0, 0.5, norm="image")
        logits = model.classify(x * m.unsqueeze(1))
    torch.testing.assert_close(pred.maps, m)
    torch.testing.assert_close(pred.logits, logits)
    assert pred.maps.shape == (4, 64, 64)


def test_erasing_starts_at_erase_start_epoch():
    model = tiny_model(erase_depth=2, erase_start_epoch=1)
    b = batch()
    assert model.training_step(b)["erase_steps"].item() == 0  # epoch 0: warm-up without erasing
    model.set_epoch(1)  # the trainer's per-epoch hook
    assert model.active_erase_depth == 2
    model.set_epoch(0)
    assert model.active_erase_depth == 0
    model.set_epoch(3)
    assert model.training_step(b)["erase_steps"].item() >= 1
    assert int(copy.deepcopy(model).state_dict()["epoch"]) == 3  # checkpointed with the weights


def test_bad_options_raise_config_error():
    with pytest.raises(ConfigError):
        tiny_model(mask_norm="pixel")
    with pytest.raises(ConfigError):
        tiny_model(trust_rule="sometimes")
    with pytest.raises(ConfigError):
        tiny_model(erase_dept=2)


def test_ablation_reachable_from_overrides_and_trains(tiny):
    cfg = tiny("minmax", epochs=1, extra=["erase_depth=0", "omega=20", "train.max_steps_per_epoch=1"])
    assert cfg.model["erase_depth"] == 0 and cfg.model["omega"] == 20
    from wslbench.registry import create_method

    method = create_method("minmax", num_classes=2, **cfg.model)
    assert method.erase_depth == 0 and method.omega == 20.0


def test_warns_for_per_sample_normalisation_trunk_whose_blank_input_gradient_explodes():
    """An untrusted sample's x+ is all zeros; through GroupNorm its gradient explodes (BatchNorm: no)."""
    grads = {}
    for backbone in ("test_efficientnet_gn", "test_resnet"):
        torch.manual_seed(0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = MinMax(3, backbone=backbone, dropout=0.0, classifier_scale=1.0)
        warned = any("per sample" in str(w.message) for w in caught)
        assert warned == (backbone == "test_efficientnet_gn")
        blank = torch.zeros(2, 3, 64, 64)
        model.train()
        model.classify(blank).logsumexp(1).sum().backward()
        grads[backbone] = max(p.grad.abs().max().item() for p in model.parameters() if p.grad is not None)
    assert grads["test_efficientnet_gn"] > 1e6 and grads["test_resnet"] < 1e3


@pytest.mark.parametrize("align_corners, first, last", [(False, 24, 39), (True, 23, 40)])
def test_upscale_geometry_of_align_corners(align_corners, first, last):
    """An 8x8 map with its 2x2 centre cells hot, upscaled to 64x64 (stride 8) and cut at 0.5.
    By hand: the cells cover pixels 24..39. align_corners=False puts sample x at source
    (x + 0.5) / 8 - 0.5, so the cut at source 2.5 / 4.5 gives 24..39; True puts it at x * 7 / 63,
    giving 22.5..40.5 -> 23..40, the map stretched by 8 / 7 about the centre."""
    model = tiny_model(align_corners=align_corners)
    cells = torch.zeros(1, 8, 8)
    cells[0, 3:5, 3:5] = 1.0
    on = model.upscale(cells, (64, 64))[0] >= 0.5
    rows = torch.nonzero(on.any(dim=1)).flatten().tolist()
    cols = torch.nonzero(on[32]).flatten().tolist()  # bilinear is separable: same cut on each axis
    assert rows == list(range(first, last + 1)) and cols == rows


def test_erasing_step_and_predict_run_under_cpu_bf16_autocast_and_channels_last():
    """The CPU fast path (wslbench.train.fastpath): the erasing passes run inside the trainer's
    bf16 autocast on a channels_last model; losses stay fp32 and close to the fp32 step's."""
    fp32 = tiny_model(erase_depth=2)
    fast = copy.deepcopy(fp32).to(memory_format=torch.channels_last)
    b = batch()
    ref = fp32.training_step(b)
    x = b["image"].contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fast.training_step({"image": x, "label": b["label"]})
        m_acc, _, _, steps = fast.erase(x, b["label"], backward=False)
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    assert m_acc.dtype == torch.float32 and 0 <= m_acc.min() and m_acc.max() <= 1 and steps >= 1
    for key in ("loss_pos", "loss_neg", "loss_loc"):
        torch.testing.assert_close(out[key], ref[key], rtol=0.05, atol=0.02)  # bf16: 8-bit mantissa
    out["loss"].backward()
    g = grads(fast)
    assert all(torch.isfinite(v).all() for v in g.values()) and any(v.abs().sum() > 0 for v in g.values())
    fast.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        pred = fast.predict(x)
    assert pred.maps.shape == (4, 64, 64) and 0 <= pred.maps.float().min() and pred.maps.float().max() <= 1
