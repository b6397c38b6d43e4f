"""Spatial pooling of class maps (B, C, H, W) -> class scores (B, C).

Shared by the CAM baselines, Wildcat and min-max (which uses Wildcat pooling).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def avg_pool(maps: torch.Tensor) -> torch.Tensor:
    """Global average pooling (CAM, Zhou et al. 2016)."""
    return maps.mean(dim=(2, 3))


def max_pool(maps: torch.Tensor) -> torch.Tensor:
    """Global max pooling (Oquab et al. 2015)."""
    return maps.amax(dim=(2, 3))


def lse_pool(maps: torch.Tensor, r: float = 10.0) -> torch.Tensor:
    """Log-sum-exp pooling (1/r) log(mean(exp(r s))) (Pinheiro & Collobert 2015), computed
    stably by factoring out the max. Tends to max as r -> inf and to the mean as r -> 0."""
    flat = maps.flatten(2)
    m = flat.amax(dim=2, keepdim=True)
    return (m.squeeze(2) + torch.log(torch.exp(r * (flat - m)).mean(dim=2)) / r)


def k_locations(k: float | int, n: int) -> int:
    """kmax/kmin as a fraction of the n locations (0 < k < 1) or a count (k >= 1)."""
    if k <= 0:
        return 0
    if k < 1:
        return max(1, int(round(k * n)))
    return min(int(k), n)


def wildcat_pool(maps: torch.Tensor, kmax: float = 1, kmin: float | None = None, alpha: float = 1.0,
                 dropout: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Wildcat spatial pooling (Durand et al. 2017) as the official code computes it
    (github.com/durandtibo/wildcat.pytorch, wildcat/pooling.py, WildcatPool2dFunction):
    (mean of the kmax highest + alpha * mean of the kmin lowest activations) / 2 when kmin > 0
    and alpha != 0, and the mean of the kmax highest alone otherwise (no halving then; kmin
    defaults to kmax). The halving scales every class score by the same 1/2, so it changes the
    logits' temperature, not their order. Min-max uses alpha = 0: its scores are the top-k mean,
    unchanged. ``dropout`` (training only) acts on the sorted activations, i.e. inside the
    pooling, not on the output map, as in the min-max authors' deepmil/decision_pooling.py."""
    flat = maps.flatten(2)
    n = flat.shape[2]
    kmax_n = k_locations(kmax, n)
    kmin_n = k_locations(kmax if kmin is None else kmin, n)
    sorted_, _ = torch.sort(flat, dim=2, descending=True)
    if dropout is not None:
        sorted_ = dropout(sorted_)
    score = sorted_[..., :kmax_n].mean(dim=2)
    if kmin_n > 0 and alpha != 0:
        score = (score + alpha * sorted_[..., n - kmin_n :].mean(dim=2)) / 2
    return score


def class_wise_pool(maps: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Wildcat's modality averaging: (B, C*M, H, W) -> (B, C, H, W)."""
    b, cm, h, w = maps.shape
    return maps.view(b, num_classes, cm // num_classes, h, w).mean(dim=2)


class WildcatHead(nn.Module):
    """1x1 conv to ``modalities`` maps per class, modality average, Wildcat pooling (with dropout
    inside the pooling while training). Returns (scores (B, C), class maps (B, C, h, w)).
    Used by the Wildcat baseline and by both networks of min-max."""

    def __init__(self, in_channels: int, num_classes: int, modalities: int = 4, kmax: float = 0.2,
                 kmin: float | None = None, alpha: float = 0.7, dropout: float = 0.0):
        super().__init__()
        self.num_classes, self.kmax, self.kmin, self.alpha = num_classes, kmax, kmin, alpha
        self.to_modalities = nn.Conv2d(in_channels, num_classes * int(modalities), kernel_size=1, bias=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = class_wise_pool(self.to_modalities(features), self.num_classes)
        return wildcat_pool(maps, self.kmax, self.kmin, self.alpha, self.dropout), maps


__all__ = ["avg_pool", "max_pool", "lse_pool", "wildcat_pool", "class_wise_pool", "k_locations", "WildcatHead"]
