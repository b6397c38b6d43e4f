"""Reaching inside a timm trunk at its feature stages (``feature_info``), by forward hooks.

WSOL methods that act between stages (ADL's dropout, SPG's guidance branches) use these
instead of copying an architecture, so one method works with every timm backbone."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from wslbench.errors import ConfigError


def feature_stage(trunk: nn.Module, index: int) -> tuple[nn.Module, int]:
    """The module ending feature stage ``index`` of a timm model (Python indexing over
    ``trunk.feature_info``: -1 is the last stage) and its number of output channels."""
    info = getattr(trunk, "feature_info", None)
    if not info:
        raise ConfigError(f"backbone {type(trunk).__name__} lists no feature stages (timm feature_info)")
    try:
        stage = info[index]
    except IndexError:
        raise ConfigError(f"feature stage {index} does not exist: the backbone has {len(info)} stages "
                          f"({', '.join(s['module'] for s in info)})") from None
    return trunk.get_submodule(stage["module"]), int(stage["num_chs"])


class StageTaps:
    """Keeps the latest output of chosen feature stages (``taps[index]``) during a forward pass."""

    def __init__(self, trunk: nn.Module, indices: tuple[int, ...]):
        self.outputs: dict[int, torch.Tensor] = {}
        self.channels: dict[int, int] = {}
        for index in indices:
            module, channels = feature_stage(trunk, index)
            self.channels[index] = channels
            module.register_forward_hook(self._keeper(index))

    def _keeper(self, index: int) -> Callable:
        def hook(module, inputs, output):
            self.outputs[index] = output

        return hook

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.outputs[index]


__all__ = ["feature_stage", "StageTaps"]
