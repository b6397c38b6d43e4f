"""The WSOL methods (HaS, ACoL, SPG, ADL, CutMix): what distinguishes each, on small tensors
against hand computations, and a short training run on synthetic for each."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.acol import Acol
from baselines.adl import Adl, adl, adl_maps
from baselines.cutmix import CutMix, cutmix
from baselines.has import HideAndSeek, hide_patches
from baselines.spg import FALLBACK_RATIO, IGNORE, MIN_FOREGROUND_PIXELS, Spg, guidance_target

TRUNK = dict(backbone="test_resnet", output_stride=16)


def _capture_input(module):
    seen = []
    module.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    return seen


# --- HaS --------------------------------------------------------------------------------------
def test_has_hides_exactly_the_drawn_patches():
    torch.manual_seed(3)
    x = torch.rand(2, 3, 10, 7) + 1.0  # no pixel is 0 before hiding
    out, hidden = hide_patches(x, patch_size=4, hide_prob=0.5)
    assert hidden.shape == (2, 3, 2)  # ceil(10/4) x ceil(7/4) cells
    assert hidden.any() and not hidden.all()
    for b in range(2):
        for i in range(10):
            for j in range(7):
                if hidden[b, i // 4, j // 4]:
                    assert (out[b, :, i, j] == 0).all()
                else:
                    assert torch.equal(out[b, :, i, j], x[b, :, i, j])


def test_has_hide_probability_extremes():
    x = torch.rand(1, 3, 8, 8) + 1
    assert torch.equal(hide_patches(x, 2, 0.0)[0], x)
    assert (hide_patches(x, 2, 1.0)[0] == 0).all()


def test_has_method_hides_in_training_only():
    torch.manual_seed(0)
    method = HideAndSeek(num_classes=2, patch_size=8, hide_prob=0.5, **TRUNK)
    seen = _capture_input(method.trunk)
    x, y = torch.rand(2, 3, 32, 32) + 1, torch.tensor([0, 1])
    torch.manual_seed(7)
    expected, _ = hide_patches(x, 8, 0.5)
    torch.manual_seed(7)
    method.train().training_step({"image": x, "label": y})
    assert torch.equal(seen[-1], expected) and not torch.equal(seen[-1], x)
    with torch.no_grad():
        method.eval().predict(x)
    assert torch.equal(seen[-1], x)  # nothing hidden at evaluation


# --- ACoL -------------------------------------------------------------------------------------
def test_acol_second_branch_sees_zeros_where_first_map_passes_threshold():
    torch.manual_seed(0)
    method = Acol(num_classes=3, head_channels=8, erase_threshold=0.6, **TRUNK).train()
    features, maps_a = [], []
    method.trunk.register_forward_hook(lambda m, i, o: features.append(o.detach().clone()))
    method.branch_a.register_forward_hook(lambda m, i, o: maps_a.append(o.detach().clone()))
    seen_b = _capture_input(method.branch_b)
    x, y = torch.rand(2, 3, 64, 64), torch.tensor([2, 0])
    out = method.training_step({"image": x, "label": y})
    assert torch.isfinite(out["loss"])
    f, a, b = features[-1].numpy(), maps_a[-1].numpy(), seen_b[-1].numpy()
    for i, c in enumerate(y.tolist()):
        m = a[i, c]
        att = (m - m.min()) / (m.max() - m.min())  # numpy min-max of the label's map
        erased = att >= 0.6
        assert erased.any() and not erased.all()
        assert (b[i][:, erased] == 0).all()
        np.testing.assert_array_equal(b[i][:, ~erased], f[i][:, ~erased])


# --- ADL --------------------------------------------------------------------------------------
def test_adl_drop_mask_and_importance_map_follow_the_definition():
    torch.manual_seed(0)
    f = torch.randn(2, 4, 3, 5)
    drop, importance = adl_maps(f, drop_threshold=0.8)
    fn = f.numpy()
    att = fn.mean(axis=1)  # self-attention: channel mean
    for b in range(2):
        expected_drop = (att[b] < 0.8 * att[b].max()).astype(np.float32)
        np.testing.assert_array_equal(drop[b, 0].numpy(), expected_drop)
        assert expected_drop.min() == 0  # the peak itself is always dropped
        np.testing.assert_allclose(importance[b, 0].numpy(), 1 / (1 + np.exp(-att[b])), rtol=1e-6)
    np.testing.assert_allclose(adl(f, 1.0, 0.8).numpy(), fn * drop.numpy(), rtol=1e-6)  # always the drop mask
    np.testing.assert_allclose(adl(f, 0.0, 0.8).numpy(), fn * importance.numpy(), rtol=1e-6)  # never


def test_adl_acts_after_the_chosen_stage_in_training_only():
    torch.manual_seed(0)
    method = Adl(num_classes=2, drop_rate=1.0, drop_threshold=0.5, stages=[-1], **TRUNK)
    stage = method.trunk.layer4  # test_resnet's last feature stage
    stage_in = _capture_input(stage)
    seen = _capture_input(method.classmaps)
    x = torch.rand(2, 3, 64, 64)
    method.train().forward_logits(x)
    with torch.no_grad():
        raw = stage.forward(stage_in[-1])  # .forward bypasses the hooks
    drop, _ = adl_maps(raw, 0.5)
    assert (drop == 0).any()
    torch.testing.assert_close(seen[-1], raw * drop)
    method.eval()
    with torch.no_grad():
        method.predict(x)
        raw = stage.forward(stage_in[-1])
    torch.testing.assert_close(seen[-1], raw)  # identity at evaluation


# --- CutMix -----------------------------------------------------------------------------------
def test_cutmix_label_weights_equal_the_pasted_area():
    torch.manual_seed(1)
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 3, 12, 9).clone()  # image i is all i
    y = torch.tensor([0, 1, 2, 0])
    for _ in range(5):
        mixed, pasted_labels, area = cutmix(x, y, beta=1.0)
        changed = (mixed != x).any(dim=1)  # pixels that now come from another image
        for i in range(4):
            source = int(mixed[i, 0][changed[i]].unique().item()) if changed[i].any() else i
            if source != i:  # pasted area counted by hand equals the label weight
                assert changed[i].float().mean().item() == pytest.approx(area)
                assert pasted_labels[i] == y[source]


def test_cutmix_loss_mixes_labels_by_area():
    torch.manual_seed(0)
    method = CutMix(num_classes=3, prob=1.0, **TRUNK).train()
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 1])
    torch.manual_seed(5)
    torch.rand(())  # the mixing draw
    mixed, pasted, area = cutmix(x, y, 1.0)
    with torch.no_grad():
        logp = torch.log_softmax(method.forward_logits(mixed), dim=1).numpy()
    expected = -((1 - area) * logp[np.arange(4), y.numpy()].mean() + area * logp[np.arange(4), pasted.numpy()].mean())
    torch.manual_seed(5)
    loss = method.training_step({"image": x, "label": y})["loss"]
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)


# --- SPG --------------------------------------------------------------------------------------
def test_spg_guidance_targets_follow_thresholds():
    ramp = torch.linspace(0, 1, 100).view(10, 10)
    # image 0: exactly 30 pixels above 0.7 (no fallback); image 1: none (fallback to 0.7 x max);
    # image 2: a few above 0.7 (fewer than 30: fallback too)
    att = torch.stack([ramp, ramp * 0.5, ramp ** 8])
    t = guidance_target(att, high=0.7, low=0.1).numpy()
    a = att.numpy()
    assert (a[0] > 0.7).sum() == MIN_FOREGROUND_PIXELS
    for b in range(3):
        fg = a[b] > 0.7
        if fg.sum() < MIN_FOREGROUND_PIXELS:
            fg = a[b] > FALLBACK_RATIO * a[b].max()
        expected = np.full((10, 10), IGNORE, dtype=np.float32)
        expected[fg] = 1
        expected[a[b] < 0.1] = 0
        np.testing.assert_array_equal(t[b], expected)
    assert (t[1] == 1).sum() == 30 and (t[0] == 0).sum() == 10 and (t[0] == IGNORE).sum() == 60


def test_spg_loss_is_classification_plus_three_guidance_losses():
    torch.manual_seed(0)
    method = Spg(num_classes=2, b_channels=8, c_channels=8, **TRUNK).train()
    x, y = torch.rand(2, 3, 64, 64), torch.tensor([1, 0])
    out = method.training_step({"image": x, "label": y})
    parts = out["loss_cls"] + out["loss_b2"] + out["loss_b1"] + out["loss_c"]
    assert float(out["loss"].detach()) == pytest.approx(float(parts), rel=1e-6)
    assert all(float(out[k]) > 0 for k in ("loss_b2", "loss_b1", "loss_c"))
    out["loss"].backward()
    assert method.b1_in[0].weight.grad is not None and method.c_branch[0][0].weight.grad is not None


# --- every method learns ----------------------------------------------------------------------
LEARN = {  # small heads so that a CPU run takes seconds
    "has": ["model.patch_size=16"],
    "acol": ["model.head_channels=32"],
    "spg": ["model.b_channels=32", "model.c_channels=32"],
    "adl": [],
    "cutmix": [],
}


@pytest.fixture(scope="module")
def all_ones_f1(tmp_path_factory):
    from tests.conftest import tiny_config
    from wslbench.train import run

    return run(tiny_config("all-ones", epochs=1, extra=LEARN_SET), out=tmp_path_factory.mktemp("ones"))["f1_pos"]


LEARN_SET = ["data.n_train=96", "data.n_val=12", "data.n_test=12"]  # 60 steps of 8 images in 5 epochs


@pytest.mark.parametrize("name", sorted(LEARN))
def test_method_learns_on_synthetic(name, tiny, tmp_path, all_ones_f1):
    from wslbench.train import run

    result = run(tiny(name, epochs=5, extra=[*LEARN_SET, *LEARN[name]]), out=tmp_path)
    assert result["epochs_run"] == 5
    assert result["f1_pos"] > all_ones_f1
