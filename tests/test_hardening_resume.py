"""What --resume, eval, --from and sweeps do with input that does not fit: one ``error:`` line
(exit code 2) naming what is wrong, nothing run or written that the record would misreport."""
from __future__ import annotations

import json
import shutil
import zipfile

import pytest
import torch
import yaml
from click.testing import CliRunner

from conftest import TINY, tiny_config
from wslbench.cli import main
from wslbench.errors import RunInterrupted, WslbenchError
from wslbench.io import read_jsonl
from wslbench.registry import create_method
from wslbench.train import Trainer
from wslbench.train import trainer as trainer_module
from wslbench.train.checkpoint import load_checkpoint

CELL = ("synthetic", "cam-avg", "seed0")


def args(epochs: int, out, *extra) -> list[str]:
    return ["run", "--method", "cam-avg", "--dataset", "synthetic", "--epochs", str(epochs),
            *[a for s in TINY for a in ("--set", s)], "--out", str(out), *extra]


def invoke(argv):
    return CliRunner().invoke(main, [str(a) for a in argv])


def one_error(result) -> str:
    """The single ``error:`` line of a refused command (exit code 2, no traceback)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [x for x in result.output.splitlines() if x.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def run_dir(out):
    return out.joinpath(*CELL)


def copy(src, tmp_path):
    dst = tmp_path / "out"
    shutil.copytree(src, dst)
    return dst


def files(folder) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A 2-epoch tiny run stopped (as by SIGTERM) in the first step of epoch 2: a mid-epoch last.pt."""
    out = tmp_path_factory.mktemp("stopped")
    with pytest.MonkeyPatch.context() as mp:
        t = Trainer(tiny_config(epochs=2), run_dir(out))
        mp.setitem(trainer_module._STOP, "requested", False)
        real, steps = t.method.training_step, {"n": 0}

        def step_then_signal(batch):
            steps["n"] += 1
            if steps["n"] == 4:  # 3 steps per epoch: the first of epoch 2
                trainer_module._STOP["requested"] = True
            return real(batch)

        mp.setattr(t.method, "training_step", step_then_signal)
        with pytest.raises(RunInterrupted):
            t.fit()
    assert load_checkpoint(run_dir(out) / "last.pt")["step"] == 1
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished")
    r = invoke(args(1, out))
    assert r.exit_code == 0, r.output
    return out


# --- 1. --resume with other settings ---------------------------------------------------------------

def test_resume_with_a_changed_setting_is_refused_naming_keys_and_values(stopped, tmp_path):
    out = copy(stopped, tmp_path)
    before = files(run_dir(out))
    optim = yaml.safe_load((run_dir(out) / "config.yaml").read_text())["optim"]
    line = one_error(invoke(args(2, out, "--resume", "--set", "optim.lr=0.5", "--set", "optim.momentum=0.5")))
    assert f"optim.lr: recorded {optim['lr']}, given 0.5" in line
    assert f"optim.momentum: recorded {optim['momentum']}, given 0.5" in line
    assert files(run_dir(out)) == before  # nothing ran, nothing rewritten
    line = one_error(invoke(args(3, out, "--resume")))
    assert "train.epochs: recorded 2, given 3" in line
    # settings that cannot change the numbers may differ; the run then continues as recorded
    r = invoke(args(2, out, "--resume", "--set", "data.num_workers=0", "--device", "cpu"))
    assert r.exit_code == 0, r.output
    recorded = yaml.safe_load((run_dir(out) / "config.yaml").read_text())
    assert recorded["optim"] == optim and json.loads((run_dir(out) / "status.json").read_text())["state"] == "finished"


def test_a_key_the_record_lacks_compares_as_the_default_it_was_read_with(stopped, tmp_path):
    out = copy(stopped, tmp_path)
    path = run_dir(out) / "config.yaml"
    recorded = yaml.safe_load(path.read_text())
    del recorded["eval"]["store_maps"]  # a record written before the key existed
    path.write_text(yaml.safe_dump(recorded, sort_keys=False))
    line = one_error(invoke(args(2, out, "--resume", "--set", "eval.store_maps=false")))
    assert "eval.store_maps: recorded true, given false" in line
    r = invoke(args(2, out, "--resume"))
    assert r.exit_code == 0, r.output


def test_resume_of_a_finished_run_with_other_settings_is_refused(finished, tmp_path):
    out = copy(finished, tmp_path)
    before = files(run_dir(out))
    lr = yaml.safe_load((run_dir(out) / "config.yaml").read_text())["optim"]["lr"]
    line = one_error(invoke(args(1, out, "--resume", "--set", "optim.lr=0.3")))
    assert f"optim.lr: recorded {lr}, given 0.3" in line and "finished" in line
    line = one_error(invoke(args(1, out, "--resume", "--seed", "0", "--set", "model.output_stride=32")))
    assert "model.output_stride" in line
    assert files(run_dir(out)) == before
    r = invoke(args(1, out, "--resume"))  # the same settings: the finished result, as before
    assert r.exit_code == 0 and "test:" in r.output


# --- 2. sweeps --------------------------------------------------------------------------------------

SWEEP_TINY = ["train.progress=false", "data.n_train=16", "data.n_val=8", "data.n_test=8", "data.image_size=48",
              "data.batch_size=8", "train.epochs=1"]


def sweep_error(tmp_path, **spec) -> str:
    spec = {"methods": ["cam-avg"], "datasets": ["synthetic"], "seeds": [0], "set": SWEEP_TINY, **spec}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return one_error(invoke(["sweep", path, "--dry-run", "--out", tmp_path / "runs"]))


def test_sweep_refuses_two_entries_that_make_the_same_cell(tmp_path):
    line = sweep_error(tmp_path, variants=[{"method": "cam-avg", "tag": "x", "set": ["optim.lr=0.1"]},
                                           {"method": "cam-avg", "tag": "x", "set": ["optim.lr=0.2"]}])
    assert "variants[0]" in line and "variants[1]" in line and "cam-avg+x" in line
    line = sweep_error(tmp_path, methods=["cam-avg", "cam-avg"])
    assert "methods[0]" in line and "methods[1]" in line
    line = sweep_error(tmp_path, variants=[{"method": "cam-avg", "tag": None}])  # no tag: the method's own row
    assert "methods[0]" in line and "variants[0]" in line
    line = sweep_error(tmp_path, seeds=[1, 1])
    assert "seeds[0]" in line and "seeds[1]" in line
    line = sweep_error(tmp_path, datasets=["synthetic", "synthetic"])
    assert "datasets[0]" in line and "datasets[1]" in line


@pytest.mark.parametrize("seeds", [[True, 1.7], [1.0], 3, ["abc"], [-1], None, []])
def test_sweep_seeds_must_be_a_list_of_integers(tmp_path, seeds):
    line = sweep_error(tmp_path, seeds=seeds)
    assert "'seeds'" in line


@pytest.mark.parametrize("key, value", [("variants", ["name"]), ("variants", {"method": "cam-avg"}),
                                        ("methods", "cam-avg"), ("methods", [["cam-avg"]]), ("datasets", "synthetic"),
                                        ("set", "train.epochs=1"), ("methods_set", ["x"]),
                                        ("datasets_set", {"synthetic": "data.n_train=8"}),
                                        ("variants", [{"method": "cam-avg", "tag": "t", "set": "optim.lr=0.1"}])])
def test_sweep_keys_of_the_wrong_type_are_named(tmp_path, key, value):
    line = sweep_error(tmp_path, **{key: value})
    assert f"'{key}'" in line or f"{key}[" in line


# --- 3. checkpoints that are not, or do not fit ------------------------------------------------------

@pytest.mark.parametrize("content", [b"\0" * 64, b"hello", b"", "zip"])
def test_a_file_that_is_no_torch_checkpoint_is_named_as_such(tmp_path, content):
    path = tmp_path / "x.pt"
    if content == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("a.txt", "hi")
    else:
        path.write_bytes(content)
    with pytest.raises(WslbenchError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "not a torch checkpoint" in message and "arbitrary code" not in message


def _bad_checkpoint(kind: str, good: dict) -> dict:
    ck = dict(good)
    if kind == "no method":
        ck.pop("method")
    elif kind == "shape":
        ck["method"] = {**good["method"], "classmaps.weight": torch.zeros(5, 3, 1, 1)}
    else:  # another method's weights
        ck["method"] = create_method("deepmil", num_classes=2, **tiny_config("deepmil").model).state_dict()
        ck["config"] = {**good.get("config", {}), "method": "deepmil"}
    return ck


KINDS = {"no method": "no 'method'", "shape": "classmaps.weight", "other": "deepmil"}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_checkpoint_that_does_not_fit_is_refused_on_resume(stopped, tmp_path, kind):
    out = copy(stopped, tmp_path)
    last = run_dir(out) / "last.pt"
    torch.save(_bad_checkpoint(kind, load_checkpoint(last)), last)
    line = one_error(invoke(args(2, out, "--resume")))
    assert str(last) in line and KINDS[kind] in line
    if kind == "shape":
        assert "checkpoint (5, 3, 1, 1) vs this run (3, 96, 1, 1)" in line


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_checkpoint_that_does_not_fit_is_refused_by_eval_and_from(finished, tmp_path, kind):
    out = copy(finished, tmp_path)
    best = run_dir(out) / "best.pt"
    torch.save(_bad_checkpoint(kind, load_checkpoint(best)), best)
    line = one_error(invoke(["eval", run_dir(out)]))
    assert str(best) in line and KINDS[kind] in line
    line = one_error(invoke(["run", "--method", "layercam", "--dataset", "synthetic", "--from", run_dir(out),
                             "--out", tmp_path / "post", *[a for s in TINY for a in ("--set", s)]]))
    assert str(best) in line and {**KINDS, "shape": "'fc.weight': checkpoint (5, 3) vs this run (3, 96)"}[kind] in line


def test_a_nul_checkpoint_is_not_called_unsafe_by_eval(finished, tmp_path):
    out = copy(finished, tmp_path)
    (run_dir(out) / "best.pt").write_bytes(b"\0" * 256)
    line = one_error(invoke(["eval", run_dir(out)]))
    assert "not a torch checkpoint" in line and "arbitrary code" not in line


# --- 4. a torn metrics.jsonl ----------------------------------------------------------------------------

def test_resume_drops_a_torn_last_metrics_line(stopped, tmp_path):
    out = copy(stopped, tmp_path)
    metrics = run_dir(out) / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"epoch": 1, "lr": 0.01, "train_lo')  # killed mid-write
    r = invoke(args(2, out, "--resume"))
    assert r.exit_code == 0, r.output
    assert [rec["epoch"] for rec in read_jsonl(metrics)] == [0, 1]
    assert json.loads((run_dir(out) / "eval.json").read_text())["epochs_run"] == 2


@pytest.mark.parametrize("corrupt, where", [
    (lambda text: "garbage\n" + text, "line 1"),
    (lambda text: text + '{"epoch": 1, "tra\n', "line 2"),  # a whole line, not a torn write
    (lambda text: text.replace('"epoch": 0', '"epoch": 5'), "epoch"),
    (lambda text: "", "epoch"),  # the checkpoint covers epoch 1, the file has none
    (lambda text: "[1, 2]\n", "line 1"),
])
def test_resume_refuses_a_metrics_file_corrupted_elsewhere(stopped, tmp_path, corrupt, where):
    out = copy(stopped, tmp_path)
    metrics = run_dir(out) / "metrics.jsonl"
    metrics.write_text(corrupt(metrics.read_text()))
    before = files(run_dir(out))
    line = one_error(invoke(args(2, out, "--resume")))
    assert "metrics.jsonl" in line and where in line
    assert files(run_dir(out)) == before


# --- 5. status.json and run.lock -------------------------------------------------------------------------

@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '"finished"', '{"state": 3}'])
def test_an_unreadable_status_file_is_refused(stopped, tmp_path, content):
    out = copy(stopped, tmp_path)
    (run_dir(out) / "status.json").write_text(content)
    before = files(run_dir(out))
    line = one_error(invoke(args(2, out, "--resume")))
    assert "status.json" in line
    assert files(run_dir(out)) == before


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"host": "h", "pid": "abc"}', ""])
def test_an_unreadable_lock_file_is_refused(stopped, tmp_path, content):
    out = copy(stopped, tmp_path)
    (run_dir(out) / "run.lock").write_text(content)
    line = one_error(invoke(args(2, out, "--resume")))
    assert "run.lock" in line
    assert (run_dir(out) / "run.lock").read_text() == content  # not taken over


def test_convert_names_a_file_that_is_no_checkpoint(tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(b"\0" * 64)
    line = one_error(invoke(["checkpoint", "convert", path]))
    assert "not a torch checkpoint" in line and "asks for Python objects" not in line
