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
