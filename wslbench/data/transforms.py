"""Joint image/mask transforms (torchvision.transforms.v2 with tv_tensors.Mask).

Training draws a random patch, flips, 90-degree rotations and (optionally) colour jitter or an
affine warp; evaluation only normalises the whole image, never crops. The image and its mask
always go through the same geometric transform in one call.
"""
from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from wslbench.errors import ConfigError


class RandomRot90(torch.nn.Module):
    """Rotate image and mask together by k*90 degrees, k uniform in {0,1,2,3}: exact, no
    interpolation, the patch size is kept for square patches."""

    def forward(self, image, mask):
        k = int(torch.randint(0, 4, (1,)))
        if k == 0:
            return image, mask
        return (
            tv_tensors.wrap(torch.rot90(image, k, dims=(-2, -1)), like=image),
            tv_tensors.wrap(torch.rot90(mask, k, dims=(-2, -1)), like=mask),
        )


def resize_pair(image, mask, size: list[int]):
    """Image (antialiased bilinear) and mask (nearest: v2 dispatches on tv_tensors.Mask) to ``size``."""
    return v2.functional.resize(image, size, antialias=True), v2.functional.resize(mask, size)


class UpscaleMinSide(torch.nn.Module):
    """Upscale so that the smaller side is at least ``size``, keeping the aspect ratio (the
    authors' ``up_scale_small_dim_to``); larger images are left as they are. Image and mask
    together: bilinear for the image, nearest for the mask (v2 dispatches on tv_tensors.Mask)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = int(size)

    def forward(self, image, mask):
        h, w = image.shape[-2:]
        if min(h, w) >= self.size:
            return image, mask
        scale = self.size / min(h, w)
        return resize_pair(image, mask, [max(self.size, round(h * scale)), max(self.size, round(w * scale))])


class Rescale(torch.nn.Module):
    """Resize image and mask by a fixed factor (every split: a short CPU schedule on GlaS works
    at half resolution, and is then evaluated at that resolution too)."""

    def __init__(self, factor: float):
        super().__init__()
        if not float(factor) > 0:
            raise ConfigError(f"data.scale must be a positive factor, got {factor}")
        self.factor = float(factor)

    def forward(self, image, mask):
        h, w = image.shape[-2:]
        return resize_pair(image, mask, [max(1, round(h * self.factor)), max(1, round(w * self.factor))])


class ReflectPadFraction(torch.nn.Module):
    """Reflect-pad image and mask together by ``fraction`` of the image's height (top and bottom)
    and width (left and right): a random crop of the result can hold mirrored tissue beyond the
    border, as in the authors' GlaS loader (padding_size (0.5, 0.5))."""

    def __init__(self, fraction: float):
        super().__init__()
        if not 0 <= float(fraction) < 1:
            raise ConfigError(f"data.pad_fraction must be in [0, 1) (reflect padding needs less than the image size), got {fraction}")
        self.fraction = float(fraction)

    def forward(self, image, mask):
        h, w = image.shape[-2:]
        ph, pw = int(h * self.fraction), int(w * self.fraction)
        if ph == 0 and pw == 0:
            return image, mask
        padding = [pw, ph, pw, ph]  # left, top, right, bottom
        return (
            v2.functional.pad(image, padding, padding_mode="reflect"),
            v2.functional.pad(mask, padding, padding_mode="reflect"),
        )


class JointTransform:
    """Apply a v2 pipeline to (image uint8 CHW, mask uint8 HW), then normalise the image."""

    def __init__(self, geometric: list, photometric: list, mean, std, rot90: bool):
        self.geometric = v2.Compose(geometric) if geometric else None
        self.rot90 = RandomRot90() if rot90 else None
        self.photometric = v2.Compose(photometric) if photometric else None
        self.normalize = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])

    def __call__(self, image: torch.Tensor, mask: torch.Tensor):
        img = tv_tensors.Image(image)
        msk = tv_tensors.Mask(mask)
        if self.geometric is not None:
            img, msk = self.geometric(img, msk)
        if self.rot90 is not None:
            img, msk = self.rot90(img, msk)
        if self.photometric is not None:
            img = self.photometric(img)
        img = self.normalize(img)
        return img.as_subclass(torch.Tensor), msk.as_subclass(torch.Tensor)


def build_transform(
    train: bool,
    patch_size: int | None = None,
    hflip: bool = False,
    vflip: bool = False,
    rot90: bool = False,
    color_jitter: dict | None = None,
    affine: dict | None = None,
    resize_min_side: int | None = None,
    scale: float | None = None,
    pad_fraction: float | None = None,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
) -> JointTransform:
    geometric: list = []
    photometric: list = []
    if scale is not None and float(scale) != 1.0:
        geometric.append(Rescale(scale))
    if resize_min_side:
        geometric.append(UpscaleMinSide(resize_min_side))
    if train:
        if affine:
            geometric.append(v2.RandomAffine(**affine))
        if pad_fraction:
            geometric.append(ReflectPadFraction(pad_fraction))
        if patch_size:
            geometric.append(v2.RandomCrop(patch_size, pad_if_needed=True, padding_mode="reflect"))
        if hflip:
            geometric.append(v2.RandomHorizontalFlip())
        if vflip:
            geometric.append(v2.RandomVerticalFlip())
        if color_jitter:
            photometric.append(v2.ColorJitter(**color_jitter))
    return JointTransform(geometric, photometric, mean, std, rot90=train and rot90)
