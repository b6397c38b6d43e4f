"""The embedded default data set: textured regions of interest on cluttered backgrounds.

Generated deterministically from a seed at first use (no download, about a second), so a new
user can train and localize on a CPU in about a minute. Each image holds one elliptical region
whose *texture* decides the class (0: checkerboard, 1: dot grid, 2: stripes at a random angle);
colours, sizes and positions are drawn from the same distributions for every class, so only
the texture inside the region is evidence. The background is smooth colour noise with
distractor rectangles and line segments, none of them textured like a class. The mask is the
region. All-ones therefore scores F1+ = 2f/(1+f) with f the region's area fraction (about 0.2),
well below what a localizing model reaches.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from wslbench.data.base import Record, WSLDataset
from wslbench.errors import ConfigError
from wslbench.options import Annotated, Field, NonNegativeInt, PositiveInt

CLASS_NAMES = ["checkerboard", "dots", "stripes"]
REGION_RADIUS = (0.13, 0.26)  # the ellipse's semi-axes, fractions of the side (config region_radius)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency colour noise: a coarse random grid upsampled bilinearly (HxWx3 in [0,1])."""
    grid = rng.random((cells + 1, cells + 1, 3))
    t = np.linspace(0, cells, size)
    i0 = np.minimum(t.astype(int), cells - 1)
    f = (t - i0)[:, None]
    rows = grid[i0] * (1 - f[..., None]) + grid[i0 + 1] * f[..., None]  # (size, cells+1, 3)
    cols = rows[:, i0] * (1 - f.T[..., None]) + rows[:, i0 + 1] * f.T[..., None]
    return cols


def _texture(cls: int, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A binary texture map in {0,1} for class ``cls`` over pixel coordinates."""
    period = rng.uniform(6.0, 10.0)
    phase_y, phase_x = rng.uniform(0, period, 2)
    y, x = yy + phase_y, xx + phase_x
    if cls == 0:  # checkerboard
        return ((np.floor(y / period) + np.floor(x / period)) % 2).astype(np.float64)
    if cls == 1:  # dots on a grid
        dy = (y % period) - period / 2
        dx = (x % period) - period / 2
        return (dy**2 + dx**2 <= (period * 0.3) ** 2).astype(np.float64)
    theta = rng.uniform(0, np.pi)  # stripes at a random angle
    proj = y * np.cos(theta) + x * np.sin(theta)
    return ((proj % period) < period / 2).astype(np.float64)


def make_image(rng: np.random.Generator, label: int, size: int,
               region_radius: tuple[float, float] = REGION_RADIUS) -> tuple[np.ndarray, np.ndarray]:
    """One (image uint8 HxWx3, mask bool HxW) pair of class ``label``; the ellipse's semi-axes are
    drawn in ``region_radius`` (fractions of the side)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    img = 0.25 + 0.5 * _smooth_noise(rng, size, cells=4)
    # distractors: untextured rectangles and line segments
    for _ in range(rng.integers(3, 7)):
        h, w = rng.integers(size // 12, size // 4, 2)
        y0, x0 = rng.integers(0, size - h), rng.integers(0, size - w)
        img[y0 : y0 + h, x0 : x0 + w] = rng.random(3)
    for _ in range(rng.integers(2, 5)):
        p0, p1 = rng.uniform(0, size, (2, 2))
        n = np.linspace(0, 1, 4 * size)[:, None]
        pts = np.clip((p0 + n * (p1 - p0)).astype(int), 0, size - 1)
        img[pts[:, 0], pts[:, 1]] = rng.random(3)
    # the region of interest: a rotated ellipse filled with the class texture
    ry, rx = rng.uniform(*region_radius, 2) * size
    cy, cx = rng.uniform(max(ry, rx) + 2, size - max(ry, rx) - 2, 2)
    ang = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    u = dy * np.cos(ang) + dx * np.sin(ang)
    v = -dy * np.sin(ang) + dx * np.cos(ang)
    mask = (u / ry) ** 2 + (v / rx) ** 2 <= 1.0
    tex = _texture(label, yy, xx, rng)
    c_on, c_off = rng.random(3), rng.random(3)
    c_off = np.where(np.abs(c_on - c_off) < 0.3, (c_on + 0.5) % 1.0, c_off)  # keep contrast
    region = tex[..., None] * c_on + (1 - tex[..., None]) * c_off
    img[mask] = region[mask]
    img = np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1)
    return (img * 255).round().astype(np.uint8), mask


@lru_cache(maxsize=4)
def generate(seed: int, n_train: int, n_val: int, n_test: int, size: int, num_classes: int,
             region_radius: tuple[float, float] = REGION_RADIUS):
    """All splits at once, deterministic in every argument; balanced classes per split."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        labels = np.arange(n) % num_classes
        rng.shuffle(labels)
        out[split] = [(int(lab), *make_image(rng, int(lab), size, region_radius)) for lab in labels]
    return out


class SyntheticDataset(WSLDataset):
    """Embedded synthetic textures on clutter (no download; generated from a seed)."""

    class_names = CLASS_NAMES

    def __init__(
        self,
        split: str = "train",
        root=None,
        data_seed: NonNegativeInt = 0,
        n_train: PositiveInt = 300,
        n_val: PositiveInt = 60,
        n_test: PositiveInt = 90,
        image_size: Annotated[int, Field(ge=16)] = 128,
        num_classes: Annotated[int, Field(ge=2, le=len(CLASS_NAMES))] = 3,
        region_radius: Annotated[tuple[float, float], Field(description="[low, high] with 0 < low <= high < 0.48")] = REGION_RADIUS,
        **kwargs,
    ):
        if not 2 <= num_classes <= len(CLASS_NAMES):
            raise ConfigError(f"synthetic num_classes must be 2 or 3, got {num_classes}")
        lo, hi = (float(r) for r in region_radius)
        if not 0 < lo <= hi < 0.48:  # an ellipse of semi-axis 0.48 of the side no longer fits
            raise ConfigError(f"synthetic region_radius must be [low, high] with 0 < low <= high < 0.48, got {list(region_radius)}")
        self.class_names = CLASS_NAMES[:num_classes]
        self._data = generate(data_seed, n_train, n_val, n_test, image_size, num_classes, tuple(region_radius))
        kwargs.setdefault("cache", None)  # already in memory
        super().__init__(split=split, root=root, **kwargs)

    def _records(self, split):
        return [Record(id=f"{split}_{i:04d}", label=lab, image=i) for i, (lab, _, _) in enumerate(self._data[split])]

    def _load(self, record):
        _, image, mask = self._data[self.split][record.image]
        return image, mask
