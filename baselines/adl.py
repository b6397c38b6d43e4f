"""ADL, Attention-based Dropout Layer (Choe & Shim, CVPR 2019): during training, the output of
chosen trunk stages is multiplied either by a drop mask that hides the most activated region
or by an importance map that highlights it (one draw per layer and step). ADL has no
parameters and does nothing at evaluation; the map is CAM-Avg's. Inserted by forward hooks on
timm feature stages, so it works with any timm trunk."""
from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from baselines.cam import CamAvg
from wslbench.methods.stages import feature_stage

#: Choe & Shim 2019 sec. 4 / wsolevaluation config.py adl_drop_rate: the drop mask is chosen 75% of the time
DROP_RATE = 0.75
#: wsolevaluation config.py adl_threshold (gamma): drop where the self-attention >= 0.9 x its maximum
DROP_THRESHOLD = 0.9
#: wsolevaluation wsol/resnet.py _ADL_POSITION puts ADL in the last two ResNet stages (layer3 and
#: layer4); here it follows each of the last two timm feature stages.
STAGES = (-2, -1)


def adl_maps(features: torch.Tensor, drop_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K, h, w) -> (drop mask, importance map), each (B, 1, h, w): the self-attention map is
    the channel mean; the drop mask is 0 where it reaches ``drop_threshold`` x its per-image
    maximum and 1 elsewhere; the importance map is its sigmoid."""
    attention = features.mean(dim=1, keepdim=True)
    peak = attention.flatten(1).max(dim=1).values.view(-1, 1, 1, 1)
    drop_mask = (attention < drop_threshold * peak).to(features.dtype)
    return drop_mask, torch.sigmoid(attention)


def adl(features: torch.Tensor, drop_rate: float, drop_threshold: float) -> torch.Tensor:
    """One ADL layer in training: features x drop mask with probability ``drop_rate``, else
    features x importance map (one draw from torch's global RNG per call)."""
    drop_mask, importance = adl_maps(features, drop_threshold)
    use_drop = float(torch.rand(())) < drop_rate
    return features * (drop_mask if use_drop else importance)


class Adl(CamAvg):
    """ADL (Choe & Shim 2019): CAM-Avg with attention-based dropout after the last trunk stages."""
    display_name = "ADL"
    family = "wsol"
    row_order = 23

    def __init__(self, num_classes: int,
                 drop_rate: Annotated[float, Field(ge=0, le=1)] = DROP_RATE,
                 drop_threshold: Annotated[float, Field(ge=0, le=1)] = DROP_THRESHOLD,
                 stages: tuple[int, ...] = STAGES,
                 **config):
        stages = tuple(int(s) for s in stages)
        super().__init__(num_classes, drop_rate=drop_rate, drop_threshold=drop_threshold, stages=list(stages), **config)
        self.drop_rate, self.drop_threshold = float(drop_rate), float(drop_threshold)
        for index in stages:
            module, _ = feature_stage(self.trunk, index)
            module.register_forward_hook(self._adl_hook)

    def _adl_hook(self, module, inputs, output):
        if module.training:  # evaluation: identity
            return adl(output, self.drop_rate, self.drop_threshold)
        return None
