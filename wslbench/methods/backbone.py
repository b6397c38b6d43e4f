"""Backbones from timm: a fully convolutional trunk returning the last feature map."""
from __future__ import annotations

import os
from pathlib import Path

import timm
from torch import nn

from wslbench.errors import ConfigError


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get("WSLBENCH_OFFLINE", "") not in ("", "0")


def is_true(pretrained) -> bool:
    """``pretrained: true`` (bool or the string from a --set override)."""
    return pretrained is True or (isinstance(pretrained, str) and pretrained.lower() == "true")


def offline_message(name: str) -> str:
    return (
        f"pretrained=true needs to download {name!r} ImageNet weights but the hub is offline "
        "(HF_HUB_OFFLINE is set). Download the weights on a machine with network "
        f"(timm.create_model({name!r}, pretrained=True)) and pass the file: "
        "--set model.pretrained=/path/to/weights.safetensors, or use model.pretrained=false."
    )


def pretrained_source(name: str, pretrained) -> bool | Path:
    """What ``pretrained`` asks for: False (random init), True (timm's ImageNet weights; refused at
    once when the hub is offline) or the Path of a local weights file (which must exist)."""
    if isinstance(pretrained, str) and pretrained.lower() not in ("true", "false"):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise ConfigError(f"pretrained weights file not found: {path}")
        return path
    if is_true(pretrained):
        if _offline():
            raise ConfigError(offline_message(name))
        return True
    return False


def create_backbone(
    name: str = "resnet18",
    pretrained: bool | str = False,
    output_stride: int | None = None,
    in_chans: int = 3,
) -> tuple[nn.Module, int]:
    """A timm model without pooling and classifier, and its number of output channels.

    ``pretrained``: False (random init), True (timm's ImageNet weights, needs network) or a
    path to a local weights file (``.pth``/``.safetensors``/``.bin``).
    """
    kwargs = dict(num_classes=0, global_pool="", in_chans=in_chans)
    if output_stride:
        kwargs["output_stride"] = output_stride
    if name not in timm.list_models() and name not in timm.list_pretrained():
        raise ConfigError(f"unknown timm backbone {name!r} (see timm.list_models())")
    source = pretrained_source(name, pretrained)
    if isinstance(source, Path):
        model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(source)), **kwargs)
    elif source:
        try:
            model = timm.create_model(name, pretrained=True, **kwargs)
        except Exception as exc:  # network errors come in many types
            raise ConfigError(
                f"could not download pretrained weights for {name!r} ({type(exc).__name__}: {exc}). "
                "Pass a local file with --set model.pretrained=/path/to/weights, or model.pretrained=false."
            ) from exc
    else:
        model = timm.create_model(name, pretrained=False, **kwargs)
    return model, model.num_features
