"""GlaS (Sirinukunwattana et al. 2017): colon histology, benign vs malignant, glands as regions
of interest. Official layout: ``<name>.bmp|png``, ``<name>_anno.bmp|png`` (one id per gland or
0/255; anything > 0 is gland), ``Grade.csv`` (bare-CR line endings, leading spaces in values).
Official train = ``train_*`` (85), test = ``testA_*`` + ``testB_*`` (80)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from wslbench.data.base import OfficialLayoutDataset, Record, read_gray, read_rgb
from wslbench.errors import DataError

GRADE_COLUMN = "grade (GlaS)"
CLASS_NAMES = ["benign", "malignant"]
N_TRAIN, N_TEST = 85, 80


def read_grades(path: Path) -> dict[str, str]:
    """{image name: grade} from the official Grade.csv (any line ending, stray spaces stripped)."""
    text = path.read_bytes().decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
    table = pd.read_csv(io.StringIO(text), skipinitialspace=True, dtype=str)
    table.columns = [c.strip() for c in table.columns]
    if "name" not in table.columns or GRADE_COLUMN not in table.columns:
        raise DataError(f"glas: {path} has columns {list(table.columns)}, expected 'name' and ' {GRADE_COLUMN}'")
    return {n.strip(): g.strip() for n, g in zip(table["name"], table[GRADE_COLUMN])}


def _find(root: Path, stem: str) -> Path | None:
    for ext in (".bmp", ".png"):
        if (root / f"{stem}{ext}").is_file():
            return root / f"{stem}{ext}"
    return None


class GlasDataset(OfficialLayoutDataset):
    """GlaS colon histology (benign/malignant); glands are the regions of interest."""

    name = "glas"
    class_names = CLASS_NAMES
    layout_help = (
        "GlaS: download 'Warwick QU Dataset (Released 2016_07_08)' from "
        "https://warwick.ac.uk/fac/cross_fac/tia/data/glascontest/download and point --data-root at the folder "
        "holding:\n  Grade.csv\n  train_1.bmp  train_1_anno.bmp ... train_85.bmp  train_85_anno.bmp\n"
        "  testA_1.bmp testA_1_anno.bmp ... testA_60.bmp, testB_1.bmp ... testB_20.bmp   (.png accepted too)"
    )

    @classmethod
    def scan(cls, root: Path) -> list[tuple[Record, str]]:
        grades = read_grades(cls.require_file(root / "Grade.csv"))
        rows = []
        for name, grade in sorted(grades.items()):
            if not name.startswith(("train_", "testA_", "testB_")):
                continue
            if grade not in CLASS_NAMES:
                raise DataError(f"glas: unknown label {grade!r} for {name} in {root / 'Grade.csv'} (expected {CLASS_NAMES})")
            image, mask = _find(root, name), _find(root, f"{name}_anno")
            if image is None:
                raise DataError(f"glas: missing image {root / name}.bmp|png listed in Grade.csv.\n{cls.help_text()}")
            if mask is None:
                raise DataError(f"glas: missing mask {root / name}_anno.bmp|png for image {image}")
            split = "train" if name.startswith("train_") else "test"
            rows.append((Record(name, CLASS_NAMES.index(grade), image, mask), split))
        counts = {s: sum(1 for _, t in rows if t == s) for s in ("train", "test")}
        if counts != {"train": N_TRAIN, "test": N_TEST}:
            raise DataError(
                f"glas: found {counts['train']} train and {counts['test']} test images in {root}, the official "
                f"release has {N_TRAIN} and {N_TEST}.\n{cls.help_text()}"
            )
        return rows

    def _load(self, record: Record) -> tuple[np.ndarray, np.ndarray]:
        return read_rgb(record.image), read_gray(record.mask) > 0
