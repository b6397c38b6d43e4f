"""CUB-200-2011 (Wah et al. 2011) and CUB5, the paper's five-species subset.

Official layout: ``images.txt`` (id, path), ``image_class_labels.txt`` (id, class 1..200),
``train_test_split.txt`` (id, 1 = train), ``classes.txt`` (id, name),
``images/<class>/<file>.jpg`` and, from the separate segmentation release,
``segmentations/<class>/<file>.png`` (soft masks: foreground where value >= 128)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from wslbench.data.base import OfficialLayoutDataset, Record, read_gray, read_rgb
from wslbench.errors import DataError

CUB5_CLASSES = ["019.Gray_Catbird", "099.Ovenbird", "108.White_necked_Raven", "171.Myrtle_Warbler", "178.Swainson_Warbler"]


def _read_table(path: Path, n_fields: int) -> list[list[str]]:
    rows = []
    for k, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=n_fields - 1)
        if len(parts) != n_fields:
            raise DataError(f"cub: malformed line {k} of {path}: {line!r}")
        rows.append(parts)
    return rows


class CubDataset(OfficialLayoutDataset):
    """CUB-200-2011 birds (200 species); the bird is the region of interest."""

    name = "cub"
    #: restrict to these class folder names (labels remapped to 0..k-1 in this order); None = all
    subset: list[str] | None = None
    layout_help = (
        "CUB-200-2011: download CUB_200_2011.tgz and segmentations.tgz from "
        "https://www.vision.caltech.edu/datasets/cub_200_2011/ (CaltechDATA record 20098); "
        "extract both and point --data-root at a folder holding:\n"
        "  images.txt  image_class_labels.txt  train_test_split.txt  classes.txt\n"
        "  images/001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg ...\n"
        "  segmentations/001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.png ..."
    )

    @classmethod
    def scan(cls, root: Path) -> list[tuple[Record, str]]:
        paths = dict(_read_table(cls.require_file(root / "images.txt"), 2))
        labels = dict(_read_table(cls.require_file(root / "image_class_labels.txt"), 2))
        is_train = dict(_read_table(cls.require_file(root / "train_test_split.txt"), 2))
        classes = {int(i): n for i, n in _read_table(cls.require_file(root / "classes.txt"), 2)}
        if cls.subset is not None:
            missing = [c for c in cls.subset if c not in classes.values()]
            if missing:
                raise DataError(f"{cls.name}: classes {missing} not in {root / 'classes.txt'}")
            remap = {i: cls.subset.index(n) for i, n in classes.items() if n in cls.subset}
        else:
            remap = {i: k for k, i in enumerate(sorted(classes))}
        rows = []
        for img_id, rel in sorted(paths.items(), key=lambda kv: int(kv[0])):
            if img_id not in labels or img_id not in is_train:
                raise DataError(f"{cls.name}: image id {img_id} ({rel}) has no label or train/test flag in {root}")
            c = int(labels[img_id])
            if c not in classes:
                raise DataError(f"{cls.name}: unknown label {c} for image {rel} (classes.txt has {len(classes)} classes)")
            if c not in remap:
                continue
            image = root / "images" / rel
            mask = (root / "segmentations" / rel).with_suffix(".png")
            rows.append((Record(rel.rsplit(".", 1)[0], remap[c], image, mask), "train" if is_train[img_id] == "1" else "test"))
        if not rows:
            raise DataError(f"{cls.name}: no images found in {root / 'images.txt'}.\n{cls.help_text()}")
        return rows

    def _records(self, split):
        names = self.subset if self.subset is not None else None
        if names is None:
            classes = _read_table(self.require_file(self.require_root(self.root) / "classes.txt"), 2)
            names = [n for _, n in sorted(classes, key=lambda r: int(r[0]))]
        self.class_names = list(names)
        return super()._records(split)

    def _load(self, record: Record) -> tuple[np.ndarray, np.ndarray]:
        if not Path(record.image).is_file():
            raise DataError(f"{self.name}: missing image {record.image}.\n{self.help_text()}")
        if not Path(record.mask).is_file():
            raise DataError(f"{self.name}: missing segmentation {record.mask} (from segmentations.tgz).\n{self.help_text()}")
        return read_rgb(record.image), read_gray(record.mask) >= 128


class Cub5Dataset(CubDataset):
    """CUB5: the paper's five CUB species, labels 0..4 in the paper's order."""

    name = "cub5"
    subset = CUB5_CLASSES
