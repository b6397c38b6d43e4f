"""Reading a run folder never runs code: checkpoints load with torch.load(weights_only=True), a
file that needs more is refused with one message, and old checkpoints convert to the safe format."""
from __future__ import annotations

import json
import pathlib
import pickle
import random

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import TINY, tiny_config
from wslbench.cli import main
from wslbench.errors import RunInterrupted, WslbenchError
from wslbench.io import read_jsonl
from wslbench.train import Trainer, run
from wslbench.train import trainer as trainer_module
from wslbench.train.checkpoint import load_checkpoint, plain_state, save_checkpoint
from wslbench.train.seeding import rng_state, set_rng_state

RUN_ARGS = ["run", "--method", "cam-avg", "--dataset", "synthetic", "--epochs", "1",
            *[a for s in TINY for a in ("--set", s)]]


class _Touch:
    """Unpickling this creates ``path``: a stand-in for a checkpoint that runs a command."""

    def __init__(self, path: pathlib.Path):
        self.path = path

    def __reduce__(self):
        return pathlib.Path.touch, (self.path,)


def _draws() -> list:
    return [random.random(), random.gauss(0.0, 1.0), random.getrandbits(64),
            np.random.rand(4).tolist(), float(np.random.standard_normal()), torch.rand(4).tolist()]


def test_rng_state_round_trip_is_exact(tmp_path):
    random.seed(3)
    np.random.seed(5)
    torch.manual_seed(7)
    _draws()  # one gauss each: python and numpy now hold a cached gaussian (the states' rarer fields)
    py_before, np_before = random.getstate(), np.random.get_state()
    assert py_before[2] is not None and np_before[3] == 1
    save_checkpoint(tmp_path / "ck.pt", {"rng": rng_state()})
    expected = _draws()
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    loaded = torch.load(tmp_path / "ck.pt", weights_only=True)["rng"]
    set_rng_state(loaded)
    assert random.getstate() == py_before
    np_after = np.random.get_state()
    assert np_after[0] == np_before[0] and np.array_equal(np_after[1], np_before[1])
    assert np_after[2:] == np_before[2:]
    assert _draws() == expected


def test_checkpoint_values_are_plain():
    state = plain_state({"best": np.float64(0.125), "n": np.int64(3), "t": torch.ones(2), "l": [np.float32(0.5)]})
    assert type(state["best"]) is float and state["best"] == 0.125
    assert type(state["n"]) is int and type(state["l"][0]) is float and state["l"][0] == 0.5
    with pytest.raises(TypeError, match="numpy.ndarray"):
        plain_state({"rng": {"keys": np.zeros(3, dtype=np.uint32)}})


def _one_error_line(output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


def test_malicious_checkpoint_is_refused_by_eval_from_resume_and_convert(tmp_path):
    r = CliRunner().invoke(main, [*RUN_ARGS, "--out", str(tmp_path / "runs")])
    assert r.exit_code == 0, r.output
    run_dir = tmp_path / "runs" / "synthetic" / "cam-avg" / "seed0"
    marker = tmp_path / "pwned"
    payload = {"epoch": 1, "method": _Touch(marker)}
    pickle.loads(pickle.dumps(_Touch(tmp_path / "live")))  # the payload does work when unpickled
    assert (tmp_path / "live").exists()

    torch.save(payload, run_dir / "best.pt")
    r = CliRunner().invoke(main, ["eval", str(run_dir)])
    assert r.exit_code == 2
    line = _one_error_line(r.output)
    assert str(run_dir / "best.pt") in line and "builtins.getattr" in line and "weights_only=True" in line
    assert "wslbench checkpoint convert" in line
    assert not marker.exists()

    # a post-hoc method reading the (finished) run's classifier with --from: refused the same way
    r = CliRunner().invoke(main, ["run", "--method", "layercam", "--dataset", "synthetic", "--from", str(run_dir),
                                  "--out", str(tmp_path / "posthoc"), *[a for s in TINY for a in ("--set", s)]])
    assert r.exit_code == 2
    line = _one_error_line(r.output)
    assert str(run_dir / "best.pt") in line and "weights_only=True" in line
    assert not marker.exists()

    (run_dir / "eval.json").unlink()  # a run that died: --resume reads last.pt
    (run_dir / "status.json").write_text('{"state": "running"}')
    torch.save(payload, run_dir / "last.pt")
    r = CliRunner().invoke(main, [*RUN_ARGS, "--out", str(tmp_path / "runs"), "--resume"])
    assert r.exit_code == 2
    line = _one_error_line(r.output)
    assert str(run_dir / "last.pt") in line and "refusing to read" in line
    assert not marker.exists()

    r = CliRunner().invoke(main, ["checkpoint", "convert", str(run_dir / "last.pt")])
    assert r.exit_code == 2 and "refusing to convert" in _one_error_line(r.output)
    assert not marker.exists()


def _old_rng_state() -> dict:
    """What earlier versions stored: the generators' own state objects (numpy's holds an array)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _result(run_dir):
    volatile = {"epoch_time_s", "images_per_s", "train_time_s", "epochs_run"}
    strip = lambda d: {k: v for k, v in d.items() if k not in volatile}  # noqa: E731
    return strip(json.loads((run_dir / "eval.json").read_text())), [strip(r) for r in read_jsonl(run_dir / "metrics.jsonl")]


def test_old_interrupt_checkpoint_is_refused_then_converts_and_resumes(tmp_path, monkeypatch):
    cfg = tiny_config(epochs=2)  # 3 steps per epoch
    run(cfg, run_dir=tmp_path / "straight")

    part = tmp_path / "part"
    old = Trainer(cfg, part)
    monkeypatch.setattr(trainer_module, "rng_state", _old_rng_state)  # write as earlier versions did
    monkeypatch.setattr(trainer_module, "save_checkpoint", lambda path, state: torch.save(state, path))
    monkeypatch.setitem(trainer_module._STOP, "requested", False)
    real, steps = old.method.training_step, {"n": 0}

    def step_then_signal(batch):
        steps["n"] += 1
        if steps["n"] == 4:  # first step of epoch 2: as if Ctrl-C came during it
            trainer_module._STOP["requested"] = True
        return real(batch)

    monkeypatch.setattr(old.method, "training_step", step_then_signal)
    with pytest.raises(RunInterrupted, match="step 1/3"):
        old.fit()
    trainer_module._STOP["requested"] = False
    monkeypatch.undo()
    with pytest.raises(WslbenchError, match=r"refusing to read checkpoint .*last\.pt.*numpy.*wslbench checkpoint convert"):
        Trainer(cfg, part, resume=True).fit()

    r = CliRunner().invoke(main, ["checkpoint", "convert", str(part)])
    assert r.exit_code == 0, r.output
    assert f"{part / 'last.pt'}: converted" in r.output
    ck = torch.load(part / "last.pt", weights_only=True)
    assert ck["step"] == 1 and ck["partial"]["n_steps"] == 1 and isinstance(ck["rng"]["numpy"]["keys"], list)
    assert load_checkpoint(part / "last.pt")["epoch"] == 1
    Trainer(cfg, part, resume=True).fit()
    assert _result(part) == _result(tmp_path / "straight")


def test_new_interrupt_checkpoint_loads_weights_only(tmp_path, monkeypatch):
    cfg = tiny_config(epochs=2)
    t = Trainer(cfg, tmp_path)
    monkeypatch.setitem(trainer_module._STOP, "requested", False)
    real = t.method.training_step

    def step_then_signal(batch):
        trainer_module._STOP["requested"] = True
        return real(batch)

    monkeypatch.setattr(t.method, "training_step", step_then_signal)
    with pytest.raises(RunInterrupted):
        t.fit()
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ck["step"] == 1 and set(ck["rng"]) >= {"python", "numpy", "torch"}
    assert set(ck["partial"]) == {"sums", "n_steps", "n_images", "elapsed"}
