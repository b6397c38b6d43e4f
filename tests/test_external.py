"""``wslbench eval --maps``: maps from any code become a run folder; bad inputs are one message
naming the file and write nothing."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import TINY
from wslbench.cli import main

SMALL = ["data.n_train=3", "data.n_val=3", "data.n_test=3", "data.image_size=32"]
IDS = ["test_0000", "test_0001", "test_0002"]
#: fields that name where the numbers come from, or how a run trained, not what it scored
SOURCE = {"method", "dataset", "seed", "tag", "source", "checkpoint", "checkpoint_epoch", "epochs_run",
          "stopped_early", "train_time_s", "best_val", "selection"}


def _sets(items):
    return [x for it in items for x in ("--set", it)]


def test_maps_written_by_our_run_reproduce_its_eval_json(tiny, tmp_path):
    from wslbench.train import run

    run(tiny("cam-avg", epochs=1, extra=["train.max_steps_per_epoch=2", "eval.save_maps=true"]), out=tmp_path / "runs")
    ours = tmp_path / "runs" / "synthetic" / "cam-avg" / "seed0"
    out = tmp_path / "ext" / "synthetic" / "elsewhere" / "seed0"
    r = CliRunner().invoke(main, ["eval", "--maps", str(ours / "maps"), "--dataset", "synthetic", *_sets(TINY),
                                  "--classes", str(ours / "per_image.csv"), "--out", str(out), "--name", "elsewhere",
                                  "--map-normalization", "min-max per image"])
    assert r.exit_code == 0, r.output
    a, b = json.loads((ours / "eval.json").read_text()), json.loads((out / "eval.json").read_text())
    assert {"cls_error", "f1_pos", "f1_neg", "pxap", "auc_f1_pos", "auc_f1_neg", "threshold", "protocol"} <= set(b)
    assert {k: v for k, v in a.items() if k not in SOURCE} == {k: v for k, v in b.items() if k not in SOURCE}
    for name in ("per_image.csv", "threshold_curves.csv", "pr_curve.csv"):
        assert (ours / name).read_text() == (out / name).read_text(), name
    assert json.loads((out / "status.json").read_text())["state"] == "finished"
    assert b["method"] == "elsewhere" and b["source"]["maps"] == str(ours / "maps")
    # the folder is a run like ours: the tables pick it up under its name
    from wslbench.tables import collect_runs

    runs = collect_runs(tmp_path / "ext")
    assert runs["method"].tolist() == ["elsewhere"] and runs["f1_pos"].tolist() == [a["f1_pos"]]


def _write(d, maps: dict):
    d.mkdir(parents=True, exist_ok=True)
    for name, arr in maps.items():
        if name.endswith(".npy"):
            np.save(d / name, arr)
        else:
            Image.fromarray(arr).save(d / name)


def _eval(tmp_path, maps_dir, *extra):
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["eval", "--maps", str(maps_dir), "-d", "synthetic", *_sets(SMALL),
                                  "--out", str(out), *extra])
    return r, out


def test_png_maps_at_another_resolution_are_resized_and_scored(tmp_path):
    rng = np.random.default_rng(0)
    maps = {"test_0000.png": (rng.random((16, 16)) * 255).astype(np.uint8),
            "test_0001.png": (rng.random((8, 8)) * 65535).astype(np.uint16),  # a stride-4 map
            "test_0002.npy": rng.random((32, 32))}
    _write(tmp_path / "m", maps)
    r, out = _eval(tmp_path, tmp_path / "m")
    assert r.exit_code == 0, r.output
    ev = json.loads((out / "eval.json").read_text())
    assert ev["cls_error"] is None and ev["n_images"] == 3 and 0 <= ev["pxap"] <= 1
    assert ev["map_normalization"] == "as supplied by the external code"
    assert len(list((out / "masks").glob("*.png"))) == 3


def _valid():
    return {f"{i}.npy": np.full((32, 32), 0.5) for i in IDS}


@pytest.mark.parametrize("change, file, words", [
    (lambda m: m.pop("test_0001.npy"), "test_0001", "missing"),
    (lambda m: m.update({"test_0009.npy": np.zeros((32, 32))}), "test_0009.npy", "not a map of a test image"),
    (lambda m: m.update({"test_0001.npy": np.zeros((2, 32, 32))}), "test_0001.npy", "must be 2-D"),
    (lambda m: m.update({"test_0002.npy": np.full((32, 32), np.nan)}), "test_0002.npy", "NaN"),
    (lambda m: m.update({"test_0000.npy": np.full((32, 32), 1.5)}), "test_0000.npy", r"\[0, 1\]"),
    (lambda m: (m.pop("test_0000.npy"), m.update({"test_0000.png": np.zeros((32, 32, 3), np.uint8)})),
     "test_0000.png", "single-channel"),
])
def test_bad_maps_are_one_message_naming_the_file_and_nothing_is_written(tmp_path, change, file, words):
    maps = _valid()
    change(maps)
    _write(tmp_path / "m", maps)
    r, out = _eval(tmp_path, tmp_path / "m")
    assert r.exit_code == 2, r.output
    line = r.output.strip()
    assert line.startswith("error: ") and "\n" not in line and "Traceback" not in r.output
    assert file in line
    import re

    assert re.search(words, line), line
    assert not out.exists()


def test_bad_class_csv_is_one_message(tmp_path):
    _write(tmp_path / "m", _valid())
    (tmp_path / "c.csv").write_text("id,pred_label\ntest_0000,0\ntest_0001,7\ntest_0002,dots\n")
    r, out = _eval(tmp_path, tmp_path / "m", "--classes", str(tmp_path / "c.csv"))
    assert r.exit_code == 2 and "c.csv, line 3" in r.output and not out.exists()
    (tmp_path / "c.csv").write_text("id,pred_label\ntest_0000,0\ntest_0001,stripes\ntest_0002,dots\n")
    r, out = _eval(tmp_path, tmp_path / "m", "--classes", str(tmp_path / "c.csv"))
    assert r.exit_code == 0, r.output
    ev = json.loads((out / "eval.json").read_text())
    from wslbench.registry import create_dataset

    labels = create_dataset("synthetic", split="test", n_train=3, n_val=3, n_test=3, image_size=32).labels
    assert ev["cls_error"] == pytest.approx(100 * np.mean(np.array([0, 2, 1]) != np.array(labels)))
