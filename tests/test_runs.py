"""Experiments and run discovery: runs at any depth, one set of tables per experiment with its
header, duplicate cells and empty roots as errors, unfinished runs reported, sweeps that name
their experiment; and `tables`/`figures` on real tiny runs made with `--out ROOT/<name>`."""
from __future__ import annotations

import json
import re

import pytest
import yaml
from click.testing import CliRunner

from wslbench.cli import main
from wslbench.errors import ConfigError, DataError, WslbenchError
from wslbench.runs import check_cells, discover


def fake_run(folder, method="cam-avg", dataset="glas", seed=0, state="finished", f1_pos=0.5, experiment=None,
             backbone="test_resnet", epochs=3, tag=None):
    """A run folder as the trainer leaves it (config.yaml, status.json, eval.json when finished)."""
    folder.mkdir(parents=True)
    cfg = {"method": method, "dataset": dataset, "seed": seed, "tag": tag, "model": {"backbone": backbone, "pretrained": False},
           "data": {"patch_size": 256}, "train": {"epochs": epochs}}
    if experiment:
        cfg["experiment"] = experiment
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    (folder / "status.json").write_text(json.dumps({"state": state}))
    if state == "finished":
        (folder / "eval.json").write_text(json.dumps({"cls_error": 10.0, "f1_pos": f1_pos, "f1_neg": 0.7,
                                                      "epochs_run": epochs, "selection": "val_error"}))
    return folder


def test_runs_nested_at_several_depths_are_all_found(tmp_path):
    root = tmp_path / "runs"
    fake_run(root / "glas" / "cam-avg" / "seed0")  # the old layout, directly under the root
    fake_run(root / "camavg-lite0" / "glas" / "cam-avg" / "seed0")  # wslbench run --out ROOT/camavg-lite0
    fake_run(root / "a" / "b" / "c" / "glas" / "minmax" / "seed1", method="minmax", seed=1)
    fake_run(root / "x" / "named-by-hand", method="wildcat")  # not <dataset>/<method>/seed<k>
    fake_run(root / "elsewhere" / "glas" / "gradcam" / "seed0", method="gradcam", experiment="paper")
    inner = fake_run(root / "y" / "glas" / "deepmil" / "seed0", method="deepmil")
    (inner / "masks").mkdir()  # a run's own subfolders are not searched
    (inner / "masks" / "config.yaml").write_text("method: deepmil\n")
    (inner / "masks" / "status.json").write_text("{}")
    found = discover(root)
    by_path = {r.path.relative_to(root).as_posix(): r.experiment for r in found.finished}
    assert by_path == {
        "glas/cam-avg/seed0": "runs",  # the root's own name
        "camavg-lite0/glas/cam-avg/seed0": "camavg-lite0",
        "a/b/c/glas/minmax/seed1": "a/b/c",
        "x/named-by-hand": "x",
        "elsewhere/glas/gradcam/seed0": "paper",  # the config's experiment key wins over the folder
        "y/glas/deepmil/seed0": "y",
    }
    assert not found.skipped


def test_two_experiments_give_separate_tables_each_headed_by_what_it_is(tmp_path):
    root = tmp_path / "runs"
    fake_run(root / "small" / "glas" / "cam-avg" / "seed0", f1_pos=0.40, epochs=12)
    fake_run(root / "small" / "glas" / "cam-avg" / "seed1", seed=1, f1_pos=0.44, epochs=12)
    fake_run(root / "big" / "glas" / "cam-avg" / "seed0", f1_pos=0.90, backbone="resnet18", epochs=160)
    res = CliRunner().invoke(main, ["tables", "--runs", str(root), "--out", str(tmp_path / "t")])
    assert res.exit_code == 0, res.output
    assert "small: 2 finished run(s)" in res.output and "big: 1 finished run(s)" in res.output
    small = (tmp_path / "t" / "small" / "table2.md").read_text()
    big = (tmp_path / "t" / "big" / "table2.md").read_text()
    assert small.startswith("_Experiment small: trunk test_resnet from scratch; input 256-px training patches; 12 epochs;")
    assert big.startswith("_Experiment big: trunk resnet18 from scratch; input 256-px training patches; 160 epochs;")
    assert re.search(r"\*\*42\.00 ± 2\.83\*\* \[[\d.]+, [\d.]+\] \(2\)", small) and "90.00" not in small  # never mixed
    assert re.search(r"\*\*90\.00\*\* \[[\d.]+, [\d.]+\] \(1\)", big) and "42.00" not in big
    assert "Experiment big: trunk resnet18" in (tmp_path / "t" / "big" / "table2.tex").read_text()
    one = CliRunner().invoke(main, ["tables", "--runs", str(root), "--out", str(tmp_path / "one"), "--experiment", "big"])
    assert one.exit_code == 0 and [p.name for p in (tmp_path / "one").iterdir()] == ["big"]
    bad = CliRunner().invoke(main, ["tables", "--runs", str(root), "--out", str(tmp_path / "x"), "--experiment", "nope"])
    assert bad.exit_code == 2 and "experiments found: big, small" in bad.output


def test_header_names_the_methods_whose_settings_differ(tmp_path):
    from wslbench.tables import describe_experiment

    root = tmp_path / "paper"
    fake_run(root / "glas" / "cam-avg" / "seed0", backbone="resnet18", epochs=160)
    fake_run(root / "glas" / "wildcat" / "seed0", method="wildcat", backbone="resnet18", epochs=160)
    fake_run(root / "glas" / "minmax" / "seed0", method="minmax", backbone="resnet101", epochs=400)
    line = describe_experiment("paper", discover(root).finished)
    assert "trunk resnet18 from scratch (Ours (min-max): resnet101 from scratch)" in line
    assert "160 epochs (Ours (min-max): 400 epochs)" in line
    # a post-hoc run loads its source's checkpoint (pretrained: false in its config): no trunk exception
    post = fake_run(root / "glas" / "layercam" / "seed0", method="layercam", backbone="resnet18", epochs=160)
    cfg = yaml.safe_load((post / "config.yaml").read_text())
    (post / "config.yaml").write_text(yaml.safe_dump({**cfg, "eval": {"from_run": "runs/glas/gradcam/seed0"}}))
    fake_run(root / "glas" / "gradcam" / "seed0", method="gradcam", backbone="resnet18", epochs=160)
    cfg["model"]["pretrained"] = True
    (root / "glas" / "cam-avg" / "seed0" / "config.yaml").unlink()
    for name in ("cam-avg", "wildcat", "gradcam"):
        c = yaml.safe_load((root / "glas" / name / "seed0" / "config.yaml").read_text()) if name != "cam-avg" else dict(cfg, method="cam-avg")
        c["model"]["pretrained"] = True
        (root / "glas" / name / "seed0" / "config.yaml").write_text(yaml.safe_dump(c))
    line = describe_experiment("paper", discover(root).finished)
    assert "trunk resnet18 ImageNet-pretrained (Ours (min-max): resnet101 from scratch)" in line, line
    assert "LayerCAM" not in line.split(";")[0]
    # one method whose exceptions differ between data sets is named with each data set, not twice alone
    fake_run(root / "synthetic" / "cam-avg" / "seed0", dataset="synthetic", backbone="resnet18", epochs=160)
    fake_run(root / "glas" / "unet" / "seed0", method="unet", backbone="resnet18", epochs=50)
    fake_run(root / "synthetic" / "unet" / "seed0", method="unet", dataset="synthetic", backbone="resnet18", epochs=60)
    line = describe_experiment("paper", discover(root).finished)
    assert ("160 epochs (Ours (min-max): 400 epochs; Full sup. (U-Net) on GlaS: 50 epochs; "
            "Full sup. (U-Net) on Synthetic: 60 epochs)") in line


def test_two_runs_in_one_cell_are_an_error_naming_both_folders(tmp_path):
    root = tmp_path / "runs"
    a = fake_run(root / "old" / "glas" / "cam-avg" / "seed0", experiment="exp")
    b = fake_run(root / "new" / "glas" / "cam-avg" / "seed0", experiment="exp")
    res = CliRunner().invoke(main, ["tables", "--runs", str(root), "--out", str(tmp_path / "t")])
    assert res.exit_code == 2 and "two runs claim one cell" in res.output
    assert str(a) in res.output and str(b) in res.output
    res = CliRunner().invoke(main, ["figures", "--runs", str(root), "-d", "glas", "--out", str(tmp_path / "f")])
    assert res.exit_code == 2 and str(a) in res.output and str(b) in res.output


def test_seeds_of_one_row_with_different_trunks_are_an_error(tmp_path):
    root = tmp_path / "runs"
    fake_run(root / "glas" / "cam-avg" / "seed0")
    fake_run(root / "glas" / "cam-avg" / "seed1", seed=1, backbone="resnet18")
    with pytest.raises(WslbenchError, match="differ in trunk"):
        check_cells(discover(root).finished)


def test_tagged_variant_is_a_row_of_its_own(tmp_path):
    from wslbench.tables import build_tables, collect_runs

    root = tmp_path / "runs"
    fake_run(root / "glas" / "cam-max" / "seed0", method="cam-max", f1_pos=0.3)
    fake_run(root / "glas" / "cam-max+big" / "seed0", method="cam-max", tag="big", f1_pos=0.6)
    t2 = build_tables(collect_runs(root))[1]
    assert t2.rows == ["CAM-Max", "CAM-Max (big)"]
    assert [row[0].mean for row in t2.cells] == [pytest.approx(30.0), pytest.approx(60.0)]


def test_empty_root_is_an_error_naming_the_root_and_the_layout(tmp_path):
    (tmp_path / "runs" / "glas").mkdir(parents=True)
    res = CliRunner().invoke(main, ["tables", "--runs", str(tmp_path / "runs")])
    assert res.exit_code == 2
    assert str(tmp_path / "runs") in res.output and "config.yaml and status.json" in res.output
    assert "<experiment>/<dataset>/<method>[+tag]/seed<k>" in res.output
    res = CliRunner().invoke(main, ["figures", "--runs", str(tmp_path / "runs"), "-d", "glas"])
    assert res.exit_code == 2 and "config.yaml and status.json" in res.output


def test_unfinished_runs_are_counted_and_reported(tmp_path):
    root = tmp_path / "runs"
    fake_run(root / "glas" / "cam-avg" / "seed0")
    for k, state in enumerate(("running", "interrupted", "failed"), 1):
        fake_run(root / "glas" / "cam-avg" / f"seed{k}", seed=k, state=state)
    res = CliRunner().invoke(main, ["tables", "--runs", str(root), "--out", str(tmp_path / "t")])
    assert res.exit_code == 0, res.output
    assert "1 finished run(s)" in res.output and "3 runs skipped: not finished" in res.output
    assert "seed2: not finished (interrupted)" in res.output
    assert "(1)" in (tmp_path / "t" / "runs" / "table2.md").read_text()  # only the finished seed counts
    only = tmp_path / "only"
    fake_run(only / "glas" / "cam-avg" / "seed0", state="running")
    res = CliRunner().invoke(main, ["tables", "--runs", str(only), "--out", str(tmp_path / "t2")])
    assert res.exit_code == 2 and "no finished runs" in res.output and "1 run skipped: not finished" in res.output


def test_full_layout_keeps_the_papers_columns_and_rows(tmp_path):
    root = tmp_path / "runs"
    fake_run(root / "glas" / "cam-avg" / "seed0")
    CliRunner().invoke(main, ["tables", "--runs", str(root), "--out", str(tmp_path / "t")])
    CliRunner().invoke(main, ["tables", "--runs", str(root), "--out", str(tmp_path / "full"), "--full-layout"])
    lean = (tmp_path / "t" / "runs" / "table2.md").read_text()
    full = (tmp_path / "full" / "runs" / "table2.md").read_text()
    assert "CUB5" not in lean and "Wildcat" not in lean
    assert "| Wildcat | – |" in full and "OxF F1- (%)" in full
    assert not (tmp_path / "t" / "runs" / "table6.md").exists()  # no CRF scores: Table 6 has no column
    assert (tmp_path / "full" / "runs" / "table6.md").is_file()


def test_experiment_names_and_run_folders():
    from wslbench.config import resolve

    cfg = resolve("cam-avg", "synthetic", overrides=["experiment=glas_lite0"])
    assert cfg.experiment == "glas_lite0" and cfg.to_dict()["experiment"] == "glas_lite0"
    assert cfg.run_dir("out").as_posix() == "out/glas_lite0/synthetic/cam-avg/seed0"
    assert resolve("cam-avg", "synthetic").run_dir("out").as_posix() == "out/synthetic/cam-avg/seed0"
    for bad in ("../up", "a b", "/abs", ""):
        with pytest.raises(ConfigError, match="experiment name"):
            resolve("cam-avg", "synthetic", overrides=[f"experiment={bad}" if bad else "experiment=''"])


def test_sweep_names_its_experiment_and_finds_its_runs_at_any_depth(tmp_path):
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump({"experiment": "exp1", "methods": ["all-ones"], "datasets": ["synthetic"],
                                    "seeds": [0], "set": ["train.progress=false", "data.n_train=8", "data.n_val=4",
                                                          "data.n_test=4", "data.image_size=32"]}))
    out = tmp_path / "records"
    res = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out)])
    assert res.exit_code == 0, res.output
    run = out / "exp1" / "synthetic" / "all-ones" / "seed0"
    assert yaml.safe_load((run / "config.yaml").read_text())["experiment"] == "exp1"
    moved = out / "archive" / "exp1" / "synthetic" / "all-ones" / "seed0"  # the records moved deeper
    moved.parent.mkdir(parents=True)
    run.rename(moved)
    res = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out)])
    assert res.exit_code == 0 and f"finished at {moved}, skipped" in res.output and "0 ran" in res.output
    res = CliRunner().invoke(main, ["tables", "--runs", str(out), "--out", str(tmp_path / "t"), "--experiment", "exp1"])
    assert res.exit_code == 0 and (tmp_path / "t" / "exp1" / "table2.md").is_file()
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"experiment": "a b", "methods": ["all-ones"], "datasets": ["synthetic"], "seeds": [0]}))
    res = CliRunner().invoke(main, ["sweep", str(bad), "--dry-run"])
    assert res.exit_code == 2 and "experiment name" in res.output


def test_tables_and_figures_find_runs_made_with_out_root_slash_name(tmp_path):
    """Two synthetic runs made with --out ROOT/<name>, then `tables --runs ROOT` and
    `figures --runs ROOT -d synthetic` find both, one experiment each (not 0 runs and all-dash
    tables)."""
    from conftest import TINY

    root = tmp_path / "runs"
    for name, method, epochs in (("camavg-tiny", "cam-avg", 1), ("minmax-tiny", "minmax", 2)):
        res = CliRunner().invoke(main, ["run", "-m", method, "-d", "synthetic", "--epochs", str(epochs),
                                        "--out", str(root / name), *[a for o in TINY for a in ("--set", o)],
                                        "--set", "train.max_steps_per_epoch=2"])
        assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["tables", "--runs", str(root), "--out", str(tmp_path / "t")])
    assert res.exit_code == 0, res.output
    assert "camavg-tiny: 1 finished run(s)" in res.output and "minmax-tiny: 1 finished run(s)" in res.output
    for name, method, row, epochs in (("camavg-tiny", "cam-avg", "CAM-Avg", "1 epoch;"),
                                      ("minmax-tiny", "minmax", "Ours (min-max)", "2 epochs;")):
        ev = json.loads((root / name / "synthetic" / method / "seed0" / "eval.json").read_text())
        md = (tmp_path / "t" / name / "table2.md").read_text()
        assert md.startswith(f"_Experiment {name}: trunk test_resnet from scratch; input 64-px images; {epochs}")
        rows = [ln for ln in md.splitlines() if ln.startswith("| ") and not ln.startswith("| Method")]
        assert len(rows) == 1 and rows[0].startswith(f"| {row} | **{100 * ev['f1_pos']:.2f}** [")
    res = CliRunner().invoke(main, ["figures", "--runs", str(root), "-d", "synthetic", "--out", str(tmp_path / "f"),
                                    "--images", "2"])
    assert res.exit_code == 0, res.output
    for name in ("camavg-tiny", "minmax-tiny"):
        for what in ("pr", "masks"):
            assert (tmp_path / "f" / name / f"synthetic_{what}.png").stat().st_size > 1000
    res = CliRunner().invoke(main, ["figures", "--runs", str(root), "-d", "glas"])
    assert res.exit_code == 2 and "no finished glas runs" in res.output and "synthetic" in res.output
    with pytest.raises(DataError, match="experiments found: camavg-tiny, minmax-tiny"):
        discover(root).select("other")
