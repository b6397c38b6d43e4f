"""GlaS on the real copy (../shared/data/glas): counts, labels vs Grade.csv, masks, the split."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from conftest import GLAS_ROOT
from wslbench.data.glas import GlasDataset
from wslbench.data.splits import splits_dir


def grades_by_hand() -> dict[str, int]:
    """Parse Grade.csv independently: bare CR line endings, stripped values."""
    raw = (GLAS_ROOT / "Grade.csv").read_bytes().decode()
    rows = list(csv.reader(raw.split("\r")))
    header = [h.strip() for h in rows[0]]
    col = header.index("grade (GlaS)")
    return {r[0].strip(): {"benign": 0, "malignant": 1}[r[col].strip()] for r in rows[1:] if r}


@pytest.fixture(scope="module")
def glas():
    assert GLAS_ROOT.is_dir(), f"real GlaS expected at {GLAS_ROOT} (set WSLBENCH_GLAS)"
    return {s: GlasDataset(split=s, root=GLAS_ROOT, cache=None) for s in ("train", "val", "test")}


def test_counts_and_stratified_split(glas):
    assert len(glas["train"]) + len(glas["val"]) == 85 and len(glas["test"]) == 80
    assert (len(glas["train"]), len(glas["val"])) == (68, 17)
    ids = {s: {r.id for r in d.records} for s, d in glas.items()}
    assert ids["train"].isdisjoint(ids["val"]) and all(i.startswith("train_") for i in ids["train"] | ids["val"])
    assert all(i.startswith(("testA_", "testB_")) for i in ids["test"])
    # stratified: 37 benign / 48 malignant -> 7 / 10 in validation (round(0.2 n))
    assert sorted(np.bincount(glas["val"].labels).tolist()) == [7, 10]


def test_labels_equal_grade_csv(glas):
    truth = grades_by_hand()
    for ds in glas.values():
        for r in ds.records:
            assert r.label == truth[r.id], r.id
    assert np.bincount(glas["test"].labels).tolist() == [37, 43]


def test_every_mask_matches_its_image_and_has_partial_foreground(glas):
    for ds in glas.values():
        for r in ds.records:
            with Image.open(r.image) as im, Image.open(r.mask) as m:
                assert im.size == m.size, r.id
            _, mask = ds.raw(ds.records.index(r))
            assert 0 < mask.mean() < 1, r.id


def test_split_identical_across_calls_and_trainer_seeds(tmp_path):
    from wslbench.config import resolve
    from wslbench.train.trainer import Trainer

    a = GlasDataset(split="val", root=GLAS_ROOT, cache=None).records
    b = GlasDataset(split="val", root=GLAS_ROOT, cache=None).records
    assert a == b
    ids = []
    for seed in (0, 7):
        cfg = resolve("all-ones", "glas", overrides=["train.progress=false"], cli={"seed": seed, "data.root": str(GLAS_ROOT)})
        ids.append([r.id for r in Trainer(cfg, tmp_path / str(seed)).dataset("val", augment=False).records])
    assert ids[0] == ids[1] == [r.id for r in a]


def test_committed_split_record_matches(glas):
    rows = list(csv.DictReader(open(splits_dir() / "glas.csv")))
    assert len(rows) == 165
    rec = {r["id"]: r["split"] for r in rows}
    for s, ds in glas.items():
        assert all(rec[r.id] == s for r in ds.records)


def test_eval_items_are_whole_images_train_items_patches():
    test = GlasDataset(split="test", root=GLAS_ROOT, patch_size=128)
    item = test[0]
    with Image.open(test.records[0].image) as im:
        assert item["image"].shape[1:] == (im.size[1], im.size[0])
    train = GlasDataset(split="train", root=GLAS_ROOT, patch_size=128, hflip=True, rot90=True)
    assert train[0]["image"].shape == (3, 128, 128) and train[0]["mask"].shape == (128, 128)
