"""Tiny data-set trees in the official layouts of CUB-200-2011 and Oxford Flowers 102 (and a
GlaS-like one), for loader tests. Each builder returns the root and what it wrote."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def _save_rgb(path: Path, arr: np.ndarray, quality: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    kw = {"quality": quality} if quality else {}
    Image.fromarray(arr.astype(np.uint8)).save(path, **kw)


def build_cub(root: Path, classes=("001.Black_footed_Albatross", "019.Gray_Catbird", "099.Ovenbird",
                                   "108.White_necked_Raven", "171.Myrtle_Warbler", "178.Swainson_Warbler"),
              per_class: int = 5, size=(40, 30), seed: int = 0) -> dict:
    """CUB layout with ``per_class`` images per class (first 3 train, rest test). Class ids are
    the numeric prefixes, so the CUB5 subset keeps its official ids. Masks: soft PNGs whose
    foreground (>= 128) is a known rectangle; returns {image rel path: (label id, fg mask)}."""
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    images, labels, split, truth = [], [], [], {}
    k = 0
    for name in classes:
        cid = int(name.split(".")[0])
        for j in range(per_class):
            k += 1
            rel = f"{name}/{name.split('.')[1]}_{j:04d}_{k}.jpg"
            _save_rgb(root / "images" / rel, rng.integers(0, 255, (h, w, 3)), quality=95)
            soft = np.zeros((h, w), np.uint8)
            soft[5:20, 8 + j: 25 + j] = 200
            soft[4, 8:25] = 100  # soft border below the 128 threshold: background
            (root / "segmentations" / rel).with_suffix(".png").parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(soft).save((root / "segmentations" / rel).with_suffix(".png"))
            images.append(f"{k} {rel}")
            labels.append(f"{k} {cid}")
            split.append(f"{k} {1 if j < 3 else 0}")
            truth[rel.rsplit('.', 1)[0]] = (cid, soft >= 128)
    (root / "images.txt").write_text("\n".join(images) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (root / "train_test_split.txt").write_text("\n".join(split) + "\n")
    all_ids = sorted({int(n.split(".")[0]) for n in classes})
    (root / "classes.txt").write_text("\n".join(f"{c} {next(n for n in classes if int(n.split('.')[0]) == c)}" for c in all_ids) + "\n")
    return truth


def build_oxf(root: Path, n: int = 12, size=(36, 28), seed: int = 0) -> dict:
    """Oxford Flowers layout with real .mat files (scipy): n images, labels cycling over 1..4,
    trn/val/tst ids interleaved. segmim: blue background (JPEG noise included), flower = a
    known disc of another colour; returns {id: (label 1-based, fg mask, split)}."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[:h, :w]
    labels = np.array([(i % 4) + 1 for i in range(n)])
    trn = [i for i in range(1, n + 1) if i % 3 == 1]
    val = [i for i in range(1, n + 1) if i % 3 == 2]
    tst = [i for i in range(1, n + 1) if i % 3 == 0]
    truth = {}
    for i in range(1, n + 1):
        _save_rgb(root / "jpg" / f"image_{i:05d}.jpg", rng.integers(0, 255, (h, w, 3)), quality=90)
        fg = (yy - h / 2) ** 2 + (xx - w / 2 - (i % 3)) ** 2 < (min(h, w) / 3) ** 2
        seg = np.zeros((h, w, 3), np.uint8)
        seg[..., 2] = 255
        seg[fg] = (230, 200, 40)
        _save_rgb(root / "segmim" / f"segmim_{i:05d}.jpg", seg, quality=85)
        split = "train" if i in trn else "val" if i in val else "test"
        truth[f"image_{i:05d}"] = (int(labels[i - 1]), fg, split)
    savemat(root / "imagelabels.mat", {"labels": labels.reshape(1, -1).astype(np.uint8)})
    savemat(root / "setid.mat", {"trnid": np.array([trn], np.uint16), "valid": np.array([val], np.uint16),
                                 "tstid": np.array([tst], np.uint16)})
    return truth


def build_glas_like(root: Path, n_train=85, n_test_a=60, n_test_b=20, size=(24, 16), seed: int = 0,
                    ext: str = ".bmp", instance_ids: bool = True, grades: dict | None = None) -> dict:
    """A GlaS-layout tree with tiny images: ``.bmp`` masks with one id per gland (as officially
    released) and a bare-CR Grade.csv with leading spaces; returns {name: grade}. ``grades``
    fixes the labels (e.g. the real ones, so that the tree matches the committed split record);
    otherwise they are drawn at random."""
    rng = np.random.default_rng(seed)
    w, h = size
    names = [f"train_{i}" for i in range(1, n_train + 1)] + [f"testA_{i}" for i in range(1, n_test_a + 1)] \
        + [f"testB_{i}" for i in range(1, n_test_b + 1)]
    given, grades = grades, {}
    lines = ["name,patient ID, grade (GlaS), grade (Sirinukunwattana et al. 2015)"]
    for k, name in enumerate(names):
        grade = given[name] if given else ("malignant" if rng.random() < 0.55 else "benign")
        grades[name] = grade
        lines.append(f"{name},{k % 16}, {grade}, {'adenomatous' if grade == 'benign' else 'moderately differentiated'}")
        _save_rgb(root / f"{name}{ext}", rng.integers(0, 255, (h, w, 3)))
        mask = np.zeros((h, w), np.uint8)
        mask[2:7, 2:9] = 1 if instance_ids else 255
        mask[9:14, 12:20] = 2 if instance_ids else 255
        Image.fromarray(mask).save(root / f"{name}_anno{ext}")
    (root / "Grade.csv").write_bytes(("\r".join(lines) + "\r").encode())
    return grades


def real_glas_grades() -> dict:
    """{name: grade} of the real GlaS release, from the committed split record."""
    import csv

    from wslbench.data.splits import splits_dir

    with open(splits_dir() / "glas.csv") as f:
        return {r["id"]: ("benign", "malignant")[int(r["label"])] for r in csv.DictReader(f)}
