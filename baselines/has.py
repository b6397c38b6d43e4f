"""Hide-and-Seek (Singh & Lee, ICCV 2017): a CAM-Avg classifier trained on images whose grid
patches are hidden at random, so that it must find every discriminative part of the object,
not only the most discriminative one. Nothing is hidden at evaluation."""
from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from baselines.cam import CamAvg

#: Singh & Lee 2017, sec. 3 and Table 1: patch sides S in {16, 32, 44, 56}; their best
#: localization on ILSVRC is GoogLeNet-HaS-32. (wsolevaluation's has_grid_size=4 is its default
#: before its hyper-parameter search, not a published value.)
PATCH_SIZE = 32
#: Singh & Lee 2017 sec. 3: each patch is hidden with probability 0.5 (wsolevaluation has_drop_rate=0.5)
HIDE_PROB = 0.5
#: Singh & Lee 2017 sec. 3.1: hidden pixels take the data set's mean pixel value, which is 0 after
#: the input normalisation (wsolevaluation writes 0 in normalised space too).
FILL = 0.0


def hide_patches(images: torch.Tensor, patch_size: int, hide_prob: float, fill: float = FILL) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, H, W) images -> (images with hidden patches, (B, ceil(H/S), ceil(W/S)) bool grid of
    hidden cells). Cells are S x S squares from the top-left corner (the last row/column may be
    cut by the border); each is hidden independently with probability ``hide_prob``, drawn
    from torch's global RNG (so the trainer's per-epoch seed fixes them)."""
    b, _, h, w = images.shape
    rows, cols = -(-h // patch_size), -(-w // patch_size)
    hidden = torch.rand(b, rows, cols) < hide_prob
    pixels = hidden.repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2)[:, :h, :w]
    pixels = pixels.to(images.device).unsqueeze(1)
    return torch.where(pixels, torch.full_like(images, fill), images), hidden


class HideAndSeek(CamAvg):
    """Hide-and-Seek (Singh & Lee 2017): CAM-Avg trained on images with random grid patches hidden."""
    display_name = "HaS"
    family = "wsol"
    row_order = 20

    def __init__(self, num_classes: int,
                 patch_size: Annotated[int, Field(ge=1)] = PATCH_SIZE,
                 hide_prob: Annotated[float, Field(ge=0, le=1)] = HIDE_PROB,
                 **config):
        super().__init__(num_classes, patch_size=patch_size, hide_prob=hide_prob, **config)
        self.patch_size, self.hide_prob = int(patch_size), float(hide_prob)

    def training_step(self, batch: dict) -> dict[str, torch.Tensor]:
        hidden, _ = hide_patches(batch["image"], self.patch_size, self.hide_prob)
        return super().training_step({**batch, "image": hidden})
