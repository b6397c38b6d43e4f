"""Turning class maps into localization maps: one shared path for every CAM-style method.

A method's map exists first at the resolution it computes it (a stride-32 class map: about 400
values for a GlaS image). :class:`MapRecipe` is what turns that *native* map into the map that is
scored (upsampling, normalisation, any pointwise step). A method's ``predict`` builds its maps
through its recipe (:func:`native_prediction`), evaluation stores the native maps with the
recipe in the run's record (wslbench.stored_maps), and ``wslbench rescore`` applies the same
recipe to them: evaluation and rescoring cannot drift apart.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

#: MapRecipe.normalize values
NORMALIZATIONS = ("minmax", "pseudo_binary", "grad_cam_package", "none")


def minmax_normalize(maps: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-image min-max normalisation to [0, 1] of (B, H, W) maps. A constant map becomes 0."""
    flat = maps.flatten(1)
    lo = flat.min(dim=1).values.view(-1, *([1] * (maps.dim() - 1)))
    hi = flat.max(dim=1).values.view(-1, *([1] * (maps.dim() - 1)))
    return (maps - lo) / (hi - lo).clamp_min(eps)


def pseudo_binary(maps: torch.Tensor, omega: float = 8.0, sigma: float = 0.5, norm: str = "image",
                  eps: float = 1e-12) -> torch.Tensor:
    """Min-max normalise (B, H, W) maps over each image (``image``) or over the whole batch
    tensor (``batch``, the min-max authors' code), then the steep sigmoid
    1 / (1 + exp(-omega (m - sigma))) (min-max's M+, paper eq. 4)."""
    if norm == "batch":
        lo, hi = maps.min(), maps.max()
    else:
        flat = maps.flatten(1)
        lo = flat.min(dim=1).values.view(-1, 1, 1)
        hi = flat.max(dim=1).values.view(-1, 1, 1)
    normed = (maps - lo) / (hi - lo).clamp_min(eps)
    return torch.sigmoid(omega * (normed - sigma))


def upsample(maps: torch.Tensor, size: tuple[int, int], align_corners: bool = False) -> torch.Tensor:
    """Bilinear upsampling of (B, H', W') maps to (B, H, W). ``align_corners=False`` keeps each
    map cell where the trunk's stride puts it (min-max offers the authors' True as an option)."""
    return F.interpolate(maps.unsqueeze(1).float(), size=tuple(size), mode="bilinear",
                         align_corners=align_corners).squeeze(1)


def select_class(class_maps: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) class maps, (B,) class indices -> (B, h, w) map of each image's class."""
    return class_maps[torch.arange(class_maps.shape[0], device=class_maps.device), classes]


@dataclass(frozen=True)
class MapRecipe:
    """How a native (B, h, w) map becomes the (B, H, W) map in [0, 1] that is scored: bilinear
    upsampling to the input size (or none: the map is already there), then a per-image
    normalisation: ``minmax`` (:func:`minmax_normalize`), ``pseudo_binary`` (min-max's
    steep sigmoid after a min-max normalisation, with ``omega`` and ``sigma``), ``none``, or
    ``grad_cam_package``: the grad-cam package's own normalise-then-resize steps
    (:func:`grad_cam_package_scale`), for the maps it computes.
    ``stored`` says in words which map is the native one (e.g. the predicted class's)."""

    stored: str = "the predicted class's map at the trunk's resolution"
    upsample: bool = True
    align_corners: bool = False
    normalize: str = "minmax"
    omega: float | None = None
    sigma: float | None = None

    def __post_init__(self):
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"MapRecipe.normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")

    def apply(self, native: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self.normalize == "grad_cam_package":
            return grad_cam_package_scale(native, size)
        maps = upsample(native, size, self.align_corners) if self.upsample else native
        if self.normalize == "minmax":
            return minmax_normalize(maps)
        if self.normalize == "pseudo_binary":
            return pseudo_binary(maps, self.omega, self.sigma, norm="image")
        return maps

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MapRecipe":
        return cls(**d)


def grad_cam_package_scale(native: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """What the grad-cam package does to the (B, h, w) map its ``get_cam_image`` returns (after its
    ReLU) for one target layer, with its own functions: min-max (eps 1e-7) and OpenCV's bilinear
    resize to ``size`` (``BaseCAM.compute_cam_per_layer``), then ReLU, the mean over the one layer
    and min-max again (``aggregate_multi_layers``). So a stored map gives the package's map back
    bit for bit."""
    import numpy as np
    from pytorch_grad_cam.utils.image import scale_cam_image

    cam = native.detach().float().cpu().numpy()
    per_layer = np.maximum(scale_cam_image(cam, (int(size[1]), int(size[0])))[:, None], 0)
    return torch.from_numpy(scale_cam_image(np.mean(per_layer, axis=1))).to(native.device)


#: the CAM family's recipe: the predicted class's map, bilinear to the input, min-max per image
CAM_RECIPE = MapRecipe()
#: a map that only exists at the input's resolution (U-Net, the grad-cam package's maps)
FULL_RESOLUTION = MapRecipe(stored="the map at the input's resolution", upsample=False, normalize="none")


def native_prediction(logits: torch.Tensor | None, native: torch.Tensor, size: tuple[int, int],
                      recipe: MapRecipe = CAM_RECIPE):
    """The Prediction whose maps are ``recipe`` applied to ``native``, which it also carries."""
    from wslbench.methods.base import Prediction

    return Prediction(logits=logits, maps=recipe.apply(native, size), native=native, recipe=recipe)


def localization_map(class_maps: torch.Tensor, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The map of the predicted class, upsampled to ``size`` then min-max normalised per image."""
    return CAM_RECIPE.apply(select_class(class_maps, logits.argmax(dim=1)), size)


def class_map_prediction(class_maps: torch.Tensor, logits: torch.Tensor, size: tuple[int, int]):
    """The CAM family's Prediction: the predicted class's map through :data:`CAM_RECIPE`."""
    return native_prediction(logits, select_class(class_maps, logits.argmax(dim=1)), size, CAM_RECIPE)
