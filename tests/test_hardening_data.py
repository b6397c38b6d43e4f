"""Hostile data and config files: each is refused with one message naming the file (exit code 2,
no traceback), and before anything is trained or written."""
from __future__ import annotations

import hashlib
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fixtures_data import build_glas_like, real_glas_grades
from wslbench.cli import main

SMALL = ["data.n_train=3", "data.n_val=3", "data.n_test=3", "data.image_size=32"]
IDS = ["test_0000", "test_0001", "test_0002"]
RUN = ["--set", "train.progress=false", "--set", "data.patch_size=16"]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WSLBENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def glas_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("glas") / "glas"
    root.mkdir()
    build_glas_like(root, ext=".png", instance_ids=False, grades=real_glas_grades())
    return root


@pytest.fixture
def glas(glas_template, tmp_path):
    root = tmp_path / "glas"
    shutil.copytree(glas_template, root)
    return root


def write_sums(root: Path) -> None:
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}" for p in sorted(root.iterdir()) if p.is_file()]
    (root / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def bomb_png(path: Path, width: int = 20000, height: int = 20000) -> None:
    """A tiny PNG whose header claims width x height pixels (its CRC kept valid)."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    data[16:20], data[20:24] = width.to_bytes(4, "big"), height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    path.write_bytes(bytes(data))


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def run_glas(root: Path, out: Path):
    return invoke("run", "-m", "all-ones", "-d", "glas", "--data-root", root, "--out", out, *RUN)


def refused(r, *words):
    """Exit code 2, one `error:` message with every word, no traceback."""
    assert r.exit_code == 2, (r.exit_code, r.output, r.exc_info)
    assert "Traceback" not in r.output and r.output.count("error: ") == 1, r.output
    for w in words:
        assert w in r.output, (w, r.output)
    return r.output


def nothing_written(out: Path):
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*")), sorted(out.rglob("*"))


# --- 1. every check of `data check` runs before `run` trains or writes anything ----------------
def test_run_refuses_a_half_size_test_mask_before_training(glas, tmp_path):
    Image.fromarray(np.zeros((8, 12), np.uint8)).save(glas / "testA_1_anno.png")
    refused(run_glas(glas, tmp_path / "out"), "mask/image size mismatch for testA_1", "testA_1_anno.png")
    nothing_written(tmp_path / "out")


def test_run_verifies_sha256sums_before_training(glas, tmp_path):
    write_sums(glas)
    a = np.array(Image.open(glas / "train_10.png"))
    a[0, 0, 0] ^= 1  # one changed pixel
    Image.fromarray(a).save(glas / "train_10.png")
    refused(run_glas(glas, tmp_path / "out"), "checksum mismatch", "train_10.png")
    nothing_written(tmp_path / "out")
    refused(invoke("data", "check", "glas", "--data-root", glas), "checksum mismatch", "train_10.png")


def test_checks_before_training_are_cached_by_path_size_and_mtime(glas, monkeypatch):
    from wslbench.data import archives
    from wslbench.data.base import verify_before_training
    from wslbench.data.glas import GlasDataset

    write_sums(glas)
    hashed, decoded = [], []
    digest, load = archives.file_digest, GlasDataset._load
    monkeypatch.setattr(archives, "file_digest", lambda p, *a, **k: hashed.append(Path(p).name) or digest(p, *a, **k))
    monkeypatch.setattr(GlasDataset, "_load", lambda self, rec: decoded.append(rec.id) or load(self, rec))
    def splits():
        return [GlasDataset(split=s, root=glas, cache=None) for s in ("train", "val", "test")]

    verify_before_training(splits())
    assert len(hashed) == 2 * 165 + 1 and len(decoded) == 165  # every file listed, every sample
    hashed.clear(), decoded.clear()
    verify_before_training(splits())
    assert hashed == [] and decoded == []  # second run: nothing read again
    Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(glas / "testB_3.png")  # changed after the first check
    with pytest.raises(Exception, match="checksum mismatch.*testB_3.png"):
        verify_before_training(splits())
    assert hashed == ["testB_3.png"] and decoded == ["testB_3"]


# --- 2. the same stem with two extensions ---------------------------------------------------------
def test_two_files_for_one_image_are_refused_naming_both(glas, tmp_path):
    write_sums(glas)
    Image.open(glas / "train_4.png").save(glas / "train_4.bmp")
    for r in (invoke("data", "check", "glas", "--data-root", glas), run_glas(glas, tmp_path / "out")):
        refused(r, "train_4.bmp", "train_4.png")
    nothing_written(tmp_path / "out")


# --- 3. --classes: conflicting duplicates, byte-order mark -----------------------------------------
def _maps(d: Path, shape=(32, 32)) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for i in IDS:
        np.save(d / f"{i}.npy", np.full(shape, 0.5))
    return d


def eval_maps(tmp_path, maps_dir, *extra):
    out = tmp_path / "out"
    sets = [x for s in SMALL for x in ("--set", s)]
    return invoke("eval", "--maps", maps_dir, "-d", "synthetic", *sets, "--out", out, *extra), out


def test_classes_with_one_id_given_two_labels_is_refused(tmp_path):
    csv = tmp_path / "classes.csv"
    csv.write_text("id,pred_label\ntest_0000,0\ntest_0001,1\ntest_0002,0\ntest_0000,1\n")
    r, out = eval_maps(tmp_path, _maps(tmp_path / "m"), "--classes", csv)
    refused(r, "test_0000", "'0'", "'1'", "line 5")
    nothing_written(out)


def test_classes_csv_with_a_byte_order_mark_is_read(tmp_path):
    from wslbench.registry import create_dataset

    labels = create_dataset("synthetic", split="test", n_train=3, n_val=3, n_test=3, image_size=32).labels
    csv = tmp_path / "classes.csv"
    csv.write_bytes(("\ufeffid,pred_label\n" + "".join(f"{i},{y}\n" for i, y in zip(IDS, labels))).encode())
    r, out = eval_maps(tmp_path, _maps(tmp_path / "m"), "--classes", csv)
    assert r.exit_code == 0, r.output
    import json

    assert json.loads((out / "eval.json").read_text())["cls_error"] == 0.0


def test_classes_csv_that_is_not_utf8_is_one_message(tmp_path):
    csv = tmp_path / "classes.csv"
    csv.write_bytes(b"id,pred_label\ntest_0000,\xff\xfe\n")
    r, out = eval_maps(tmp_path, _maps(tmp_path / "m"), "--classes", csv)
    refused(r, "classes.csv", "line 2", "not UTF-8")
    nothing_written(out)


# --- 4. a map of another aspect ratio ----------------------------------------------------------------
def test_map_of_another_aspect_ratio_is_refused_with_both_shapes(tmp_path):
    maps = _maps(tmp_path / "m")
    np.save(maps / "test_0001.npy", np.full((1, 5000), 0.5))
    r, out = eval_maps(tmp_path, maps)
    refused(r, "test_0001.npy", "1x5000", "32x32")
    nothing_written(out)


def test_map_of_the_same_aspect_ratio_is_resized(tmp_path):
    maps = _maps(tmp_path / "m", shape=(4, 4))  # a stride-8 map
    np.save(maps / "test_0001.npy", np.full((64, 64), 0.5))  # made at twice the evaluation size
    r, _ = eval_maps(tmp_path, maps)
    assert r.exit_code == 0, r.output


def test_map_shape_check_allows_a_stride_rounding():
    from wslbench.errors import DataError
    from wslbench.external import check_shape

    for shape in ((17, 25), (16, 24), (522, 775), (261, 388)):  # GlaS 775x522 at stride 32 (ceil/floor), 1, 2
        check_shape(Path("m.npy"), shape, (522, 775))
    for shape in ((544, 800), (25, 17), (1, 5000)):  # a padded image's map, transposed, absurd
        with pytest.raises(DataError, match="aspect ratio"):
            check_shape(Path("m.npy"), shape, (522, 775))


# --- 5. decompression bombs ----------------------------------------------------------------------------
def test_decompression_bomb_is_refused_naming_file_and_limit(glas, tmp_path):
    bomb_png(glas / "testA_2.png")
    refused(invoke("data", "check", "glas", "--data-root", glas), "testA_2.png", "limit")
    refused(run_glas(glas, tmp_path / "out"), "testA_2.png", "limit")
    nothing_written(tmp_path / "out")


def test_decompression_bomb_map_is_refused(tmp_path):
    maps = _maps(tmp_path / "m")
    (maps / "test_0002.npy").unlink()
    bomb_png(maps / "test_0002.png")
    r, out = eval_maps(tmp_path, maps)
    refused(r, "test_0002.png", "limit")
    nothing_written(out)


# --- 6. broken data files --------------------------------------------------------------------------------
def test_grade_csv_with_a_blank_grade_names_file_and_line(glas):
    raw = (glas / "Grade.csv").read_bytes().split(b"\r")
    raw[3] = b",".join(raw[3].split(b",")[:2] + [b"", raw[3].split(b",")[3]])
    (glas / "Grade.csv").write_bytes(b"\r".join(raw))
    name = raw[3].split(b",")[0].decode()
    refused(invoke("data", "check", "glas", "--data-root", glas), "Grade.csv, line 4", f"no grade for {name}")


def test_grade_csv_with_non_utf8_bytes_names_file_and_line(glas):
    raw = (glas / "Grade.csv").read_bytes().split(b"\r")
    raw[5] = raw[5].replace(b"benign", b"b\xe9nign").replace(b"malignant", b"m\xe9lignant")
    (glas / "Grade.csv").write_bytes(b"\r".join(raw))
    refused(invoke("data", "check", "glas", "--data-root", glas), "Grade.csv, line 6", "not UTF-8")


def test_sha256sums_line_with_one_field_names_file_and_line(glas, tmp_path):
    write_sums(glas)
    with open(glas / "SHA256SUMS", "a") as fh:
        fh.write("0123abcd\n")
    n = len((glas / "SHA256SUMS").read_text().splitlines())
    refused(invoke("data", "check", "glas", "--data-root", glas), f"SHA256SUMS, line {n}")
    refused(run_glas(glas, tmp_path / "out"), f"SHA256SUMS, line {n}")
    nothing_written(tmp_path / "out")


@pytest.mark.parametrize("corrupt", [
    lambda p: p.write_bytes(p.read_bytes()[:60]),  # truncated inside the pixel data
    lambda p: p.write_bytes(p.read_bytes()[:8] + bytes(range(256)) * 4),  # a PNG signature, then garbage
    lambda p: p.write_bytes(b""),
])
def test_corrupt_image_is_one_message_naming_it(glas, tmp_path, corrupt):
    corrupt(glas / "testB_7.png")
    refused(invoke("data", "check", "glas", "--data-root", glas), "testB_7.png")
    refused(run_glas(glas, tmp_path / "out"), "testB_7.png")
    nothing_written(tmp_path / "out")


def test_data_section_that_is_not_a_mapping(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: 5\n")
    out = refused(invoke("run", "-m", "cam-avg", "--config", cfg, "--set", "data.n_train=4", "--out", tmp_path / "out"),
                  "c.yaml", "'data' must be a mapping")
    assert "n_train" not in out


# --- 7. alias chains -------------------------------------------------------------------------------------
def test_yaml_alias_chain_is_refused_with_a_short_message(tmp_path):
    lines = ["seed:", "  - &a0 [x, x, x, x, x, x, x, x, x, x]"]  # 10**6 values once expanded, each printed
    lines += [f"  - &a{k} [" + ", ".join([f"*a{k - 1}"] * 10) + "]" for k in range(1, 6)]
    cfg = tmp_path / "lol.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    out = refused(invoke("run", "-m", "cam-avg", "--config", cfg, "--out", tmp_path / "out"), "lol.yaml", "aliases")
    assert len(out) < 500


def test_yaml_with_a_few_aliases_still_loads():
    from wslbench.config import yaml_load

    assert yaml_load("lr: &lr 0.01\noptim: {lr: *lr}\n") == {"lr": 0.01, "optim": {"lr": 0.01}}


# --- 8. a .npy that is not one ------------------------------------------------------------------------
def test_npy_map_that_is_text_says_not_a_npy_file(tmp_path):
    maps = _maps(tmp_path / "m")
    text = tmp_path / "passwd"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (maps / "test_0000.npy").unlink()
    (maps / "test_0000.npy").symlink_to(text)
    r, out = eval_maps(tmp_path, maps)
    msg = refused(r, "test_0000.npy", "not a .npy file")
    assert "pickle" not in msg
    nothing_written(out)
