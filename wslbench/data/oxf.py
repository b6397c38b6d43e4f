"""Oxford Flowers 102 (Nilsback & Zisserman 2008). Official layout: ``jpg/image_XXXXX.jpg``,
``segmim/segmim_XXXXX.jpg`` (the background painted pure blue (0, 0, 255), JPEG-compressed),
``imagelabels.mat`` (``labels``, 1..102) and ``setid.mat`` (``trnid``, ``valid``, ``tstid``).
The official validation set is used as is.

Two rules turn a segmim image into the flower mask (data option ``mask_rule``):
  ``blue_distance`` (the default): foreground = farther than ``blue_tolerance`` (60) from pure
      blue, which absorbs the JPEG noise of the painted background;
  ``authors``: the min-max authors' conversion (create_folds.py, the Oxford-flowers-102 part):
      subtract (0, 0, 254) per channel with saturation (PIL ImageChops.subtract); a pixel is
      foreground when anything is left, i.e. R > 0 or G > 0 or B = 255, so every JPEG-noisy
      background pixel counts as flower; the binary mask is then saved as a JPEG and read back
      with "value != 0" (their loader.py), which adds the JPEG ringing at the edges.
Which rule produced a number: the paper configs (experiments/oxf/dataset.yaml) set
``mask_rule: authors`` so that OxF scores compare with the paper's; any other config uses
``blue_distance`` unless it says otherwise (the run's config.yaml records it)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from wslbench.data.base import OfficialLayoutDataset, Record, read_rgb
from wslbench.errors import ConfigError, DataError
from wslbench.options import Literal, NonNegativeFloat

#: a pixel is background when its distance to pure blue is below this (JPEG noise tolerance)
BLUE_TOLERANCE = 60.0
#: the background colour the authors subtract (create_folds.py: "Background color [0 0 254]")
AUTHORS_BACKGROUND = (0, 0, 254)
MASK_RULES = ("blue_distance", "authors")


def foreground_from_segmim(segmim: np.ndarray, tolerance: float = BLUE_TOLERANCE) -> np.ndarray:
    """Foreground = pixels farther than ``tolerance`` (Euclidean, RGB 0..255) from (0, 0, 255)."""
    diff = segmim.astype(np.float32) - np.array([0.0, 0.0, 255.0], dtype=np.float32)
    return np.sqrt((diff ** 2).sum(axis=2)) > tolerance


def foreground_authors_rule(segmim: np.ndarray, jpeg_round_trip: bool = True) -> np.ndarray:
    """The authors' rule: saturating subtraction of (0, 0, 254), foreground where any channel is
    left above 0; with ``jpeg_round_trip`` the binary mask goes through their JPEG save (PIL's
    default quality) and is read back as ``value != 0``."""
    left = np.clip(segmim.astype(np.int16) - np.array(AUTHORS_BACKGROUND, dtype=np.int16), 0, 255)
    fg = left.mean(axis=2) != 0
    if not jpeg_round_trip:
        return fg
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(fg.astype(np.uint8) * 255, mode="L").save(buf, "JPEG")
    buf.seek(0)
    return np.array(Image.open(buf).convert("L")) != 0


def _load_mat(path: Path) -> dict:
    from scipy.io import loadmat

    try:
        return loadmat(path)
    except Exception as exc:  # scipy raises several types for a bad file
        raise DataError(f"oxf: cannot read {path}: {exc}") from exc


class OxfordFlowersDataset(OfficialLayoutDataset):
    """Oxford Flowers 102; the flower is the region of interest (official train/val/test)."""

    name = "oxf"
    carve_validation = False
    extra_options = {**OfficialLayoutDataset.extra_options, "blue_tolerance": NonNegativeFloat,
                     "mask_rule": Literal["blue_distance", "authors"]}
    class_names = [f"flower_{k:03d}" for k in range(1, 103)]
    layout_help = (
        "Oxford Flowers 102: download 102flowers.tgz, 102segmentations.tgz, imagelabels.mat and setid.mat from "
        "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ and point --data-root at a folder holding:\n"
        "  imagelabels.mat  setid.mat\n  jpg/image_00001.jpg ...\n  segmim/segmim_00001.jpg ..."
    )

    @classmethod
    def scan(cls, root: Path) -> list[tuple[Record, str]]:
        labels = _load_mat(cls.require_file(root / "imagelabels.mat")).get("labels")
        setid = _load_mat(cls.require_file(root / "setid.mat"))
        if labels is None or any(k not in setid for k in ("trnid", "valid", "tstid")):
            raise DataError(f"oxf: imagelabels.mat needs 'labels' and setid.mat 'trnid', 'valid', 'tstid' ({root})")
        labels = np.asarray(labels).ravel()
        rows = []
        for key, split in (("trnid", "train"), ("valid", "val"), ("tstid", "test")):
            for i in np.asarray(setid[key]).ravel():
                i = int(i)
                if not 1 <= i <= len(labels):
                    raise DataError(f"oxf: setid.mat {key} lists image {i}, imagelabels.mat has {len(labels)}")
                y = int(labels[i - 1])
                if not 1 <= y <= 102:
                    raise DataError(f"oxf: unknown label {y} for image {i} in {root / 'imagelabels.mat'}")
                image = root / "jpg" / f"image_{i:05d}.jpg"
                mask = root / "segmim" / f"segmim_{i:05d}.jpg"
                rows.append((Record(f"image_{i:05d}", y - 1, image, mask), split))
        return rows

    def mask_rule(self) -> str:
        rule = self.options.get("mask_rule", "blue_distance")
        if rule not in MASK_RULES:
            raise ConfigError(f"oxf: unknown data.mask_rule {rule!r}; expected one of {', '.join(MASK_RULES)}")
        return rule

    def _disk_path(self, rec: Record) -> Path:
        """The disk cache keeps one file per mask rule (and tolerance): a mask is never reused across rules."""
        path = super()._disk_path(rec)
        rule = self.mask_rule()
        tag = rule if rule == "authors" else f"{rule}{self.options.get('blue_tolerance', BLUE_TOLERANCE):g}"
        return path.with_name(f"{path.stem}-{tag}{path.suffix}")

    def _load(self, record: Record) -> tuple[np.ndarray, np.ndarray]:
        for path in (record.image, record.mask):
            if not Path(path).is_file():
                raise DataError(f"oxf: missing file {path}.\n{self.help_text()}")
        segmim = read_rgb(record.mask)
        if self.mask_rule() == "authors":
            return read_rgb(record.image), foreground_authors_rule(segmim)
        return read_rgb(record.image), foreground_from_segmim(segmim, self.options.get("blue_tolerance", BLUE_TOLERANCE))
