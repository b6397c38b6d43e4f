"""A run's record holds every option value it ran with, and the packages that provided its method
and data set: a later change of a default cannot silently re-score an old run."""
import json
import shutil

import pytest
import yaml

from conftest import tiny_config
from wslbench import options
from wslbench.rescore import rescore_run
from wslbench.train import run
from wslbench.train.trainer import Trainer, evaluate_run

SCORES = ("f1_pos", "f1_neg", "pxap", "cls_error")


@pytest.fixture(scope="module")
def lse_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("lse") / "run"
    run(tiny_config("cam-lse", epochs=1), run_dir=d)
    return d


def test_config_yaml_holds_the_values_methods_take_from_their_signatures(lse_run, tmp_path):
    cfg = yaml.safe_load((lse_run / "config.yaml").read_text())
    assert cfg["model"]["r"] == 5.0  # CAM-LSE's r, from its signature
    assert cfg["data"]["mean"] == [0.485, 0.456, 0.406]  # what the run normalised with
    run(tiny_config("wildcat", epochs=1), run_dir=tmp_path / "wildcat")
    wildcat = yaml.safe_load((tmp_path / "wildcat" / "config.yaml").read_text())["model"]
    assert {"kmax", "kmin", "alpha", "modalities"} <= set(wildcat) and wildcat["alpha"] == 0.7


def test_env_json_names_the_packages_that_provide_method_and_data_set(lse_run):
    env = json.loads((lse_run / "env.json").read_text())
    assert env["method_package"]["name"] == "wslbench" and env["dataset_package"]["name"] == "wslbench"
    from importlib.metadata import version

    assert env["method_package"]["version"] == version("wslbench")


def test_a_changed_default_moves_neither_a_reevaluation_nor_a_rescore(lse_run, tmp_path, monkeypatch):
    from baselines.cam import CamLse

    original = json.loads((lse_run / "eval.json").read_text())
    monkeypatch.setattr(CamLse.__init__, "__defaults__", (0.5,))  # r: 5.0 -> 0.5 after the run
    monkeypatch.setattr(options, "_CACHE", {})
    recorded = tmp_path / "recorded"
    shutil.copytree(lse_run, recorded)
    (recorded / "eval.json").unlink()
    again = evaluate_run(recorded)
    assert {k: again[k] for k in SCORES} == {k: original[k] for k in SCORES}
    assert "options_not_recorded" not in again
    # a record written before config.yaml held r: the new default applies, and eval.json says so
    old_style = tmp_path / "old_style"
    shutil.copytree(lse_run, old_style)
    (old_style / "eval.json").unlink()
    cfg = yaml.safe_load((old_style / "config.yaml").read_text())
    del cfg["model"]["r"]
    (old_style / "config.yaml").write_text(yaml.safe_dump(cfg))
    moved = evaluate_run(old_style)
    assert moved["options_not_recorded"] == {"model.r": 0.5}
    # the methods built from the two records (r reaches the maps only through the predicted class)
    assert Trainer.from_run_dir(recorded).method.r == 5.0
    assert Trainer.from_run_dir(old_style).method.r == 0.5  # so the checks above can fail
    # a rescore builds no method at all: the stored maps give the original numbers
    kept = tmp_path / "kept"
    shutil.copytree(lse_run, kept)
    rescore_run(kept)
    assert (kept / "eval.json").read_bytes() == (lse_run / "eval.json").read_bytes()


def test_a_record_from_before_the_loader_and_map_keys_is_reevaluated(lse_run, tmp_path):
    """config.yaml of older records has no data.num_workers/persistent_workers, eval.store_maps or
    eval.pad_validation: re-evaluating one works, stores the maps and names what was not recorded."""
    old = tmp_path / "old"
    shutil.copytree(lse_run, old)
    cfg = yaml.safe_load((old / "config.yaml").read_text())
    for key in ("num_workers", "persistent_workers", "mean", "std", "region_radius"):
        cfg["data"].pop(key, None)
    for key in ("store_maps", "pad_validation"):
        cfg["eval"].pop(key, None)
    (old / "config.yaml").write_text(yaml.safe_dump(cfg))
    for f in ("eval.json", "maps-test.npz", "maps-val.npz"):
        (old / f).unlink()
    result = evaluate_run(old)
    original = json.loads((lse_run / "eval.json").read_text())
    assert {k: result[k] for k in SCORES} == {k: original[k] for k in SCORES}
    assert set(result["options_not_recorded"]) == {"data.mean", "data.std", "data.region_radius"}
    assert (old / "maps-test.npz").is_file() and (old / "maps-val.npz").is_file()
