"""Baselines: Deep MIL attention and Grad-CAM against independent computations; every method
trains a few steps through the shared trainer and predicts maps in [0, 1]."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from baselines.all_ones import AllOnes
from baselines.deepmil import AttentionMilPool
from baselines.gradcam import GradCam, grad_cam
from wslbench.registry import create_method, list_methods

BASELINES = ["cam-avg", "cam-max", "cam-lse", "wildcat", "deepmil", "gradcam", "unet", "all-ones"]


def test_all_baselines_registered():
    assert set(BASELINES) | {"minmax"} <= set(list_methods())


def test_mil_attention_by_hand_and_sums_to_one():
    torch.manual_seed(0)
    pool = AttentionMilPool(in_channels=3, num_classes=2, hidden=4, gated=True, embed_dim=5).double()
    f = torch.randn(2, 3, 2, 3, dtype=torch.float64)
    scores, attn = pool(f)
    np.testing.assert_allclose(attn.sum(dim=(2, 3)).detach().numpy(), np.ones((2, 2)), rtol=1e-12)
    # numpy: h = ReLU(E x + e), a = softmax_n(w^T (tanh(V h) * sigmoid(U h))), z_c = sum_n a_cn h_n,
    # s_c = <z_c, v_c> + b_c
    x = f.flatten(2).transpose(1, 2).numpy()  # (B, N, D)
    E, bE = pool.embedding[0].weight.detach().numpy(), pool.embedding[0].bias.detach().numpy()
    h = np.maximum(x @ E.T + bE, 0.0)  # (B, N, 5)
    V, bV = pool.V.weight.detach().numpy(), pool.V.bias.detach().numpy()
    U, bU = pool.U.weight.detach().numpy(), pool.U.bias.detach().numpy()
    W, bW = pool.w.weight.detach().numpy(), pool.w.bias.detach().numpy()
    gate = np.tanh(h @ V.T + bV) * (1 / (1 + np.exp(-(h @ U.T + bU))))
    e = gate @ W.T + bW  # (B, N, C)
    a = np.exp(e) / np.exp(e).sum(axis=1, keepdims=True)
    z = np.einsum("bnc,bnd->bcd", a, h)
    s = (z * pool.classifier.detach().numpy()).sum(-1) + pool.bias.detach().numpy()
    np.testing.assert_allclose(scores.detach().numpy(), s, rtol=1e-10)
    np.testing.assert_allclose(attn.flatten(2).detach().numpy(), a.transpose(0, 2, 1), rtol=1e-10)


def test_deepmil_embeds_instances_with_the_published_500_units():
    method = create_method("deepmil", num_classes=3, backbone="test_resnet")
    emb = method.pool.embedding
    assert isinstance(emb[0], nn.Linear) and isinstance(emb[1], nn.ReLU)
    assert emb[0].out_features == 500 and emb[0].in_features == method.trunk.num_features  # Ilse et al.: L = 500
    assert method.pool.V.in_features == 500 and method.pool.classifier.shape == (3, 500)
    assert create_method("deepmil", num_classes=3, backbone="test_resnet", embed_dim=7).pool.embedding[0].out_features == 7
    maps = method.eval().predict(torch.randn(1, 3, 64, 64)).maps
    assert maps.shape == (1, 64, 64)


def test_grad_cam_matches_hand_computation_on_tiny_network():
    # score_c = mean_hw(sum_k W_ck A_k): d score_c / d A_k(ij) = W_ck / (h w), so w_k = W_ck / (h w)
    torch.manual_seed(0)
    A = torch.randn(1, 3, 2, 2, requires_grad=True)
    W = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.0, -1.0]])
    scores = A.mean(dim=(2, 3)) @ W.T
    cam = grad_cam(A, scores, torch.tensor([0]))
    expected = torch.relu((W[0].view(3, 1, 1) / 4 * A.detach()[0]).sum(0))
    torch.testing.assert_close(cam[0], expected)


def test_gradcam_method_matches_grad_cam_package():
    from pytorch_grad_cam import GradCAM

    torch.manual_seed(0)
    method = GradCam(num_classes=3, backbone="test_resnet").eval()
    with torch.no_grad():  # a class-discriminative head, so that no image's CAM is all zero
        method.fc.weight.copy_(torch.randn(3, method.fc.in_features) * 5)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():  # evaluation calls predict under no_grad
        pred = method.predict(x)
    assert all(p.grad is None for p in method.parameters())  # ours leaves .grad alone

    class Wrapper(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, images):
            return self.m.forward_logits(images)

    with GradCAM(model=Wrapper(method), target_layers=[method.trunk]) as cam:
        ref = cam(input_tensor=x, targets=None)  # predicted class, normalised per image, resized
    # the package normalises at feature resolution then resizes; compare after renormalising
    ref_t = torch.tensor(ref)
    lo, hi = ref_t.flatten(1).min(1).values, ref_t.flatten(1).max(1).values
    assert (hi > lo).all()
    ref_t = (ref_t - lo.view(-1, 1, 1)) / (hi - lo).view(-1, 1, 1)
    assert pred.maps.shape == (2, 64, 64)
    torch.testing.assert_close(pred.maps, ref_t, atol=2e-3, rtol=0)


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_trains_and_predicts(name, tiny, tmp_path):
    from wslbench.train import run

    cfg = tiny(name, epochs=1, extra=["train.max_steps_per_epoch=2", "data.n_train=16", "data.n_val=8", "data.n_test=8"])
    result = run(cfg, out=tmp_path)
    run_dir = tmp_path / "synthetic" / name / "seed0"
    ev = json.loads((run_dir / "eval.json").read_text())
    assert 0 <= ev["f1_pos"] <= 1 and 0 <= ev["f1_neg"] <= 1
    method = create_method(name, num_classes=3, **cfg.model).eval()
    with torch.no_grad():
        pred = method.predict(torch.rand(2, 3, 64, 64))
    assert pred.maps.shape == (2, 64, 64)
    assert float(pred.maps.min()) >= 0 and float(pred.maps.max()) <= 1
    if method.classifies:
        assert pred.logits.shape == (2, 3) and ev["cls_error"] is not None
    else:
        assert pred.logits is None and ev["cls_error"] is None
    if name == "all-ones":  # nothing trained: evaluated directly, F1- is 0 for a full mask
        assert ev["epochs_run"] == 0
        assert ev["f1_neg"] == pytest.approx(0.0, abs=1e-9) and ev["f1_pos"] > 0
    else:
        assert ev["epochs_run"] == 1
    assert result is not None


def test_unet_selects_on_validation_f1(tiny, tmp_path):
    from wslbench.train import run

    cfg = tiny("unet", epochs=1, extra=["train.max_steps_per_epoch=1", "data.n_train=8", "data.n_val=8", "data.n_test=8"])
    run(cfg, out=tmp_path)
    lines = (tmp_path / "synthetic" / "unet" / "seed0" / "metrics.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    assert "val_f1_pos" in rec and "val_error" not in rec
    # the checkpoint is chosen on the mean of both Dice scores, not F1+ alone
    assert rec["val_f1_mean"] == pytest.approx((rec["val_f1_pos"] + rec["val_f1_neg"]) / 2)
    ev = json.loads((tmp_path / "synthetic" / "unet" / "seed0" / "eval.json").read_text())
    assert ev["selection"] == "val_f1_mean" and ev["best_val"] == rec["val_f1_mean"]


def test_all_ones_has_no_parameters():
    assert sum(p.numel() for p in AllOnes(num_classes=2).parameters()) == 0


def test_gradcam_at_the_last_stage_is_relu_of_cam_up_to_a_positive_factor():
    # score_c = W_c . mean_hw(A) + b_c, so Grad-CAM_c = ReLU(sum_k W_ck A_k) / (h w): ReLU(CAM) / (h w)
    torch.manual_seed(0)
    method = GradCam(num_classes=3, backbone="test_resnet").eval()
    with torch.no_grad():
        method.fc.weight.copy_(torch.randn(3, method.fc.in_features) * 5)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits, cam = method.gradcam_maps(x)
        A = method.trunk(x)  # (B, K, h, w), the last stage
    h, w = A.shape[-2:]
    W = method.fc.weight.detach()
    classes = logits.argmax(1)
    class_maps = torch.einsum("ck,bkhw->bchw", W, A)  # CAM by hand from the fc weights (bias drops out)
    expected = torch.relu(class_maps[torch.arange(2), classes]) / (h * w)
    torch.testing.assert_close(cam, expected, rtol=1e-4, atol=1e-6)
    assert (cam.flatten(1).amax(1) > 0).all()


def test_gradcam_at_an_earlier_stage_is_not_proportional_to_cam():
    torch.manual_seed(0)
    last = GradCam(num_classes=3, backbone="test_resnet").eval()
    with torch.no_grad():
        last.fc.weight.copy_(torch.randn(3, last.fc.in_features) * 5)
    earlier = GradCam(num_classes=3, backbone="test_resnet", target_layer=-2).eval()
    earlier.load_state_dict(last.state_dict())
    assert earlier.target_module == last.trunk.feature_info[-2]["module"]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = last.predict(x), earlier.predict(x)
    torch.testing.assert_close(a.logits, b.logits)  # same network, same prediction
    assert a.maps.shape == b.maps.shape == (2, 64, 64)
    # proportional maps would be identical after the per-image min-max normalisation
    assert (a.maps - b.maps).abs().amax() > 0.2
    assert all(p.grad is None for p in earlier.parameters())  # the hook path leaves .grad alone too


def test_gradcam_target_layer_out_of_range_is_a_config_error():
    from wslbench.errors import ConfigError

    with pytest.raises(ConfigError, match="target_layer 9 is out of range"):
        GradCam(num_classes=2, backbone="test_resnet", target_layer=9)
    with pytest.raises(ConfigError, match="not a module"):
        GradCam(num_classes=2, backbone="test_resnet", target_layer="layer9")
