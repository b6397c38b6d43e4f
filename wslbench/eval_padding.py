"""Evaluation geometry of the min-max authors: reflect-pad each test image so that both sides are
multiples of 32, predict, and crop the prediction back to the image.

Their loader (loader.py, ``force_div_32`` and ``get_padding``) pads every evaluation image this
way, the extra pixel of an odd leftover going to the right / bottom, and their training loop
(deepmil/train.py, validate) crops the predicted mask back before scoring it. With a trunk of
stride 32 an unpadded odd-sized image puts the last feature cell partly outside the image and
shifts the upsampled map; padding to a multiple keeps every cell inside. Config:
``eval.pad_multiple`` (0 = off, 32 in the paper configs).

We crop at the exact padding offsets. (The authors' centre crop, ``hp/2 - h/2`` in integers,
can land one pixel off the padding they added when the leftover is odd.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from wslbench.errors import ConfigError


def split_padding(size: int, multiple: int) -> tuple[int, int]:
    """(before, after) padding that makes ``size`` a multiple of ``multiple``; an odd leftover puts
    the extra pixel after (the authors' loader.get_padding)."""
    leftover = (-size) % multiple
    return leftover // 2, leftover - leftover // 2


def _reflect(images: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """Reflect padding of (B, C, H, W) by any amount: torch's reflect needs a pad smaller than the
    side, so larger pads are applied in steps (reflecting the already padded image, as numpy does)."""
    while left or right or top or bottom:
        h, w = images.shape[-2:]
        step = [min(left, w - 1), min(right, w - 1), min(top, h - 1), min(bottom, h - 1)]
        if not any(step):  # a 1-pixel side has nothing to reflect: repeat it
            return F.pad(images, (left, right, top, bottom), mode="replicate")
        images = F.pad(images, tuple(step), mode="reflect")
        left, right, top, bottom = left - step[0], right - step[1], top - step[2], bottom - step[3]
    return images


def pad_to_multiple(images: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Reflect-pad (B, C, H, W) images to sides that are multiples of ``multiple`` (0 or 1: no
    padding). Returns the padded images and the box (top, left, H, W) of the original image in them."""
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 0:
        raise ConfigError(f"eval.pad_multiple must be a non-negative integer (0 = off), got {multiple!r}")
    h, w = images.shape[-2:]
    if multiple <= 1:
        return images, (0, 0, h, w)
    top, bottom = split_padding(h, multiple)
    left, right = split_padding(w, multiple)
    return _reflect(images, left, right, top, bottom), (top, left, h, w)


def crop_to_box(maps: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """(..., H', W') maps predicted on padded images -> (..., H, W) over the original image."""
    top, left, h, w = box
    return maps[..., top : top + h, left : left + w]


__all__ = ["split_padding", "pad_to_multiple", "crop_to_box"]
