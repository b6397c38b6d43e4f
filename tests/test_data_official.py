"""CUB, CUB5, OxF (and GlaS-layout edge cases) on tiny fixture trees in the official layouts;
bad layouts give one clear message naming the file, from `data check` and from `run`."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fixtures_data import build_cub, build_glas_like, build_oxf, real_glas_grades
from wslbench.cli import main
from wslbench.data.cub import CUB5_CLASSES, Cub5Dataset, CubDataset
from wslbench.data.glas import GlasDataset
from wslbench.data.oxf import OxfordFlowersDataset, foreground_from_segmim
from wslbench.errors import DataError

NO_RECORD = {"verify_split": False}  # fixture trees are not the real releases


@pytest.fixture
def cub_root(tmp_path):
    root = tmp_path / "CUB_200_2011"
    return root, build_cub(root)


def test_cub_labels_masks_and_stratified_split(cub_root):
    root, truth = cub_root
    parts = {s: CubDataset(split=s, root=root, cache=None, **NO_RECORD) for s in ("train", "val", "test")}
    assert parts["train"].num_classes == 6
    official_ids = sorted(int(n.split(".")[0]) for n in {rel.split("/")[0] for rel in truth})
    for s, ds in parts.items():
        for i, r in enumerate(ds.records):
            cid, fg = truth[r.id]
            assert r.label == official_ids.index(cid)
            _, mask = ds.raw(i)
            np.testing.assert_array_equal(mask, fg)  # soft mask thresholded at 128
    # 3 official train images per class -> round(0.6) = 1 to validation per class
    assert len(parts["val"]) == 6 and len(parts["train"]) == 12 and len(parts["test"]) == 12
    assert sorted(parts["val"].labels) == list(range(6))
    assert {r.id for r in parts["train"].records}.isdisjoint(r.id for r in parts["val"].records)


def test_cub5_remaps_the_paper_classes_to_0_4(cub_root):
    root, truth = cub_root
    ds = Cub5Dataset(split="test", root=root, cache=None, **NO_RECORD)
    assert ds.class_names == CUB5_CLASSES and ds.num_classes == 5
    for r in ds.records:
        folder = r.id.split("/")[0]
        assert folder in CUB5_CLASSES and r.label == CUB5_CLASSES.index(folder)
    assert not any(r.id.startswith("001.") for r in ds.records)  # class outside the subset dropped


def test_oxf_official_splits_labels_and_blue_background(tmp_path):
    truth = build_oxf(tmp_path / "oxf")
    for split in ("train", "val", "test"):
        ds = OxfordFlowersDataset(split=split, root=tmp_path / "oxf", cache=None)
        expected = sorted(i for i, t in truth.items() if t[2] == split)
        assert [r.id for r in ds.records] == expected
        for i, r in enumerate(ds.records):
            label, fg, _ = truth[r.id]
            assert r.label == label - 1
            _, mask = ds.raw(i)
            # JPEG noise: allow a one-pixel ring of disagreement at the disc border
            assert (mask != fg).mean() < 0.08 and mask[fg].mean() > 0.9


def test_blue_rule_by_hand():
    seg = np.array([[[0, 0, 255], [10, 20, 240], [0, 0, 180], [200, 30, 40]]], dtype=np.uint8)
    # distances to (0,0,255): 0, ~26.9, 75, ~299 -> background, background, flower, flower
    assert foreground_from_segmim(seg).tolist() == [[False, False, True, True]]


def test_glas_accepts_official_bmp_instance_ids_and_bare_cr(tmp_path):
    grades = build_glas_like(tmp_path / "g")
    ds = GlasDataset(split="test", root=tmp_path / "g", cache=None, **NO_RECORD)
    assert len(ds) == 80
    for i, r in enumerate(ds.records):
        assert r.label == ["benign", "malignant"].index(grades[r.id])
        _, mask = ds.raw(i)
        assert mask.dtype == bool and mask.sum() == 5 * 7 + 5 * 8  # both gland ids are foreground


# --- bad input ---------------------------------------------------------------------------------
def _check(args):
    return CliRunner().invoke(main, ["data", "check", *args])


def _run(dataset, root, tmp_path):
    return CliRunner().invoke(main, ["run", "--method", "all-ones", "--dataset", dataset, "--data-root", str(root),
                                     "--out", str(tmp_path / "runs"), "--set", "train.progress=false"])


def assert_clear(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in result.output, result.output


def test_missing_root_names_download_and_tree(tmp_path):
    for res in (_check(["glas", "--data-root", str(tmp_path / "nope")]), _run("glas", tmp_path / "nope", tmp_path)):
        assert_clear(res, "does not exist", "warwick.ac.uk", "Grade.csv")


def test_missing_mask_is_named(tmp_path):
    root = tmp_path / "g"
    build_glas_like(root, grades=real_glas_grades())
    (root / "train_3_anno.bmp").unlink()
    for res in (_check(["glas", "--data-root", str(root)]), _run("glas", root, tmp_path)):
        assert_clear(res, "train_3_anno")


def test_size_mismatch_is_named(tmp_path):
    root = tmp_path / "g"
    build_glas_like(root, grades=real_glas_grades())
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "testA_2_anno.bmp")
    assert_clear(_check(["glas", "--data-root", str(root)]), "size mismatch", "testA_2")


def test_corrupt_image_is_named(tmp_path):
    root = tmp_path / "g"
    build_glas_like(root, grades=real_glas_grades())
    (root / "train_7.bmp").write_bytes(b"not an image at all")
    for res in (_check(["glas", "--data-root", str(root)]), _run("glas", root, tmp_path)):
        assert_clear(res, "corrupt or unreadable image", "train_7.bmp")


def test_unknown_label_is_named(tmp_path):
    root = tmp_path / "g"
    build_glas_like(root, grades=real_glas_grades())
    raw = (root / "Grade.csv").read_bytes().replace(b"train_4,3, benign", b"train_4,3, dubious").replace(
        b"train_4,3, malignant", b"train_4,3, dubious")
    (root / "Grade.csv").write_bytes(raw)
    assert_clear(_check(["glas", "--data-root", str(root)]), "unknown label", "train_4")


def test_split_record_mismatch_is_reported(tmp_path):
    root = tmp_path / "g"
    build_glas_like(root, seed=3)  # the real names with random labels: differs from the record
    res = _check(["glas", "--data-root", str(root)])
    assert_clear(res, "does not match the committed split record")


def test_cub_missing_segmentation_is_named(cub_root, tmp_path):
    root, truth = cub_root
    victim = sorted(truth)[0]
    (root / "segmentations" / f"{victim}.png").unlink()
    ds = CubDataset(split="train", root=root, cache=None, **NO_RECORD)
    idx = [i for i, r in enumerate(ds.records) if r.id == victim]
    target = ds if idx else CubDataset(split="val", root=root, cache=None, **NO_RECORD)
    idx = idx or [i for i, r in enumerate(target.records) if r.id == victim]
    with pytest.raises(DataError, match="segmentations.tgz"):
        target.raw(idx[0])


def test_archive_checksums_verified(tmp_path):
    import hashlib

    from wslbench.data import archives

    good = b"official bytes"
    (tmp_path / "setid.mat").write_bytes(good)
    (tmp_path / "imagelabels.mat").write_bytes(b"tampered")
    fake = [archives.Archive("setid.mat", "https://example.org/setid.mat", hashlib.md5(good).hexdigest()),
            archives.Archive("imagelabels.mat", "https://example.org/imagelabels.mat", hashlib.md5(good).hexdigest()),
            archives.Archive("102flowers.tgz", "https://example.org/102flowers.tgz", "0" * 32)]
    saved = archives.ARCHIVES["oxf"]
    archives.ARCHIVES["oxf"] = fake
    try:
        res = CliRunner().invoke(main, ["data", "check", "oxf", "--archives", str(tmp_path)])
    finally:
        archives.ARCHIVES["oxf"] = saved
    assert res.exit_code == 2
    assert "setid.mat: md5 OK" in res.output
    assert "checksum mismatch" in res.output and "imagelabels.mat" in res.output
    assert "archive not found" in res.output and "102flowers.tgz" in res.output


def test_missing_cub_root_lists_downloads_with_checksums(tmp_path):
    res = _check(["cub", "--data-root", str(tmp_path / "none")])
    assert_clear(res, "CUB_200_2011.tgz", "97eceeb196236b17998738112f37df78", "segmentations.tgz")


def test_disk_cache_serves_decoded_arrays_and_notices_changed_files(cub_root, tmp_path):
    import os
    import time

    root, truth = cub_root
    cache = tmp_path / "cache"
    ds = CubDataset(split="test", root=root, cache="disk", cache_dir=cache, **NO_RECORD)
    first = ds.raw(0)
    files = list(cache.rglob("*.npz"))
    assert len(files) == 1
    rec = ds.records[0]
    image_path = rec.image
    original = image_path.read_bytes()
    image_path.write_bytes(b"broken")  # newer than the cache: must be decoded again
    os.utime(image_path, (time.time() + 5, time.time() + 5))
    with pytest.raises(DataError, match="corrupt"):
        ds.raw(0)
    image_path.write_bytes(original)
    os.utime(image_path, (time.time() - 100, time.time() - 100))  # older than the cache
    again = CubDataset(split="test", root=root, cache="disk", cache_dir=cache, **NO_RECORD).raw(0)
    np.testing.assert_array_equal(again[0], first[0])
    np.testing.assert_array_equal(again[1], first[1])
    image_path.unlink()  # served from the cache alone
    np.testing.assert_array_equal(ds.raw(0)[0], first[0])


def test_authors_oxf_rule_by_hand():
    from wslbench.data.oxf import foreground_authors_rule

    seg = np.array([[[0, 0, 254], [0, 0, 255], [1, 0, 254], [0, 0, 200]],
                    [[0, 3, 10], [230, 200, 40], [0, 0, 0], [0, 0, 253]]], dtype=np.uint8)
    # (0,0,254) subtracted with saturation: left = (0,0,0), (0,0,1), (1,0,0), (0,0,0) / (0,3,0), (230,200,0), 0, 0
    expected = [[False, True, True, False], [True, True, False, False]]
    assert foreground_authors_rule(seg, jpeg_round_trip=False).tolist() == expected
    # where the blue-distance rule calls the noisy background pixels (0,0,255), (1,0,254) background
    assert foreground_from_segmim(seg).tolist() == [[False, False, False, False], [True, True, True, False]]


def test_authors_oxf_rule_jpeg_round_trip_keeps_the_flower_and_an_empty_background():
    from wslbench.data.oxf import foreground_authors_rule

    seg = np.zeros((16, 16, 3), np.uint8)
    seg[..., 2] = 254
    assert not foreground_authors_rule(seg).any()  # a clean background stays empty through the JPEG
    seg[4:12, 4:12] = (230, 200, 40)
    fg = foreground_authors_rule(seg)
    assert fg[4:12, 4:12].all() and fg.sum() >= 64  # the JPEG may add ringing around, never remove the flower


def test_oxf_mask_rule_option_and_bad_rule(tmp_path):
    from wslbench.errors import ConfigError

    build_oxf(tmp_path / "oxf")
    blue = OxfordFlowersDataset(split="test", root=tmp_path / "oxf", cache=None)
    authors = OxfordFlowersDataset(split="test", root=tmp_path / "oxf", cache=None, mask_rule="authors")
    assert authors.raw(0)[1].sum() > blue.raw(0)[1].sum()  # the JPEG-noisy blue counts as flower for the authors
    with pytest.raises(ConfigError, match="mask_rule"):
        OxfordFlowersDataset(split="test", root=tmp_path / "oxf", cache=None, mask_rule="nope").raw(0)
