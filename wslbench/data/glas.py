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
    """{image name: grade} from the official Grade.csv (any line ending, stray spaces stripped);
    a file that is not UTF-8 text, or a row without a name or grade, is a DataError naming the
    line."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n") + 1
        raise DataError(f"glas: {path}, line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x})") from exc
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    try:
        table = pd.read_csv(io.StringIO(text), skipinitialspace=True, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"glas: {path} is not a readable CSV: {exc}") from exc
    table.columns = [str(c).strip() for c in table.columns]
    if "name" not in table.columns or GRADE_COLUMN not in table.columns:
        raise DataError(f"glas: {path} has columns {list(table.columns)}, expected 'name' and ' {GRADE_COLUMN}'")
    grades: dict[str, str] = {}
    lines = [n for n, ln in enumerate(text.split("\n"), 1) if ln.strip()][1:]  # file line of each row
    for k, (name, grade) in enumerate(zip(table["name"], table[GRADE_COLUMN])):
        where = f"{path}, line {lines[k] if k < len(lines) else k + 2}"
        name, grade = (v.strip() if isinstance(v, str) else "" for v in (name, grade))  # NaN: a short row
        if not name:
            raise DataError(f"glas: {where}: no image name")
        if not grade:
            raise DataError(f"glas: {where}: no grade for {name} (expected one of {CLASS_NAMES})")
        if name in grades and grades[name] != grade:
            raise DataError(f"glas: {where}: {name} listed again with grade {grade!r} (first {grades[name]!r})")
        grades[name] = grade
    return grades


def _find(root: Path, stem: str) -> Path | None:
    """``<stem>.bmp`` or ``<stem>.png``; both at once is ambiguous (which pixels are the data?)."""
    found = [root / f"{stem}{ext}" for ext in (".bmp", ".png") if (root / f"{stem}{ext}").is_file()]
    if len(found) > 1:
        raise DataError(f"glas: both {found[0]} and {found[1]} exist: keep one (the loader cannot tell which is meant)")
    return found[0] if found else None


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
