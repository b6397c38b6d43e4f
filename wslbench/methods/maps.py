"""Turning class maps into localization maps: one shared path for every CAM-style method."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def minmax_normalize(maps: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-image min-max normalisation to [0, 1] of (B, H, W) maps. A constant map becomes 0."""
    flat = maps.flatten(1)
    lo = flat.min(dim=1).values.view(-1, *([1] * (maps.dim() - 1)))
    hi = flat.max(dim=1).values.view(-1, *([1] * (maps.dim() - 1)))
    return (maps - lo) / (hi - lo).clamp_min(eps)


def upsample(maps: torch.Tensor, size: tuple[int, int], align_corners: bool = False) -> torch.Tensor:
    """Bilinear upsampling of (B, H', W') maps to (B, H, W). ``align_corners=False`` keeps each
    map cell where the trunk's stride puts it (min-max offers the authors' True as an option)."""
    return F.interpolate(maps.unsqueeze(1).float(), size=tuple(size), mode="bilinear",
                         align_corners=align_corners).squeeze(1)


def select_class(class_maps: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) class maps, (B,) class indices -> (B, h, w) map of each image's class."""
    return class_maps[torch.arange(class_maps.shape[0], device=class_maps.device), classes]


def localization_map(class_maps: torch.Tensor, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The map of the predicted class, upsampled to ``size`` then min-max normalised per image."""
    return minmax_normalize(upsample(select_class(class_maps, logits.argmax(dim=1)), size))
