"""Fault tolerance on CPU: SIGINT mid-epoch and SIGKILL both resume to the same final metrics as
an uninterrupted run; NaN loss stops and keeps the last good checkpoint; the lock refuses a
second writer; a finished run is never overwritten."""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from wslbench.cli import main
from wslbench.errors import TrainingDiverged, WslbenchError
from wslbench.train import run
from wslbench.train.lock import RunLock
from wslbench.train.trainer import Trainer

ARGS = ["--method", "cam-avg", "--dataset", "synthetic", "--epochs", "3",
        "--set", "data.n_train=160", "--set", "data.n_val=16", "--set", "data.n_test=16", "--set", "data.image_size=64",
        "--set", "data.batch_size=8", "--set", "train.progress=false"]


def cli(out: Path, *extra) -> list[str]:
    return [sys.executable, "-m", "wslbench.cli", "run", *ARGS, "--out", str(out), *extra]


def result(out: Path) -> tuple[dict, list[dict]]:
    d = out / "synthetic" / "cam-avg" / "seed0"
    ev = json.loads((d / "eval.json").read_text())
    hist = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    return ev, hist


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    subprocess.run(cli(out), check=True, capture_output=True, timeout=300)
    return result(out)


def _wait_for(path: Path, proc, timeout=120):
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout
        time.sleep(0.05)


def _same(a, b):
    (ev_a, hist_a), (ev_b, hist_b) = a, b
    assert [h["val_error"] for h in hist_a] == [h["val_error"] for h in hist_b]
    assert [h["train_loss"] for h in hist_a] == pytest.approx([h["train_loss"] for h in hist_b], rel=1e-12, abs=0)
    for k in ("cls_error", "f1_pos", "f1_neg"):
        assert ev_a[k] == ev_b[k]


def test_sigint_mid_epoch_then_resume_matches_straight_run(straight, tmp_path):
    proc = subprocess.Popen(cli(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "synthetic" / "cam-avg" / "seed0"
    _wait_for(run_dir / "last.pt", proc)  # epoch 1 done: now inside epoch 2
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    status = json.loads((run_dir / "status.json").read_text())
    if status["state"] == "finished":  # the signal came too late to test anything
        pytest.fail("run finished before SIGINT; make the run longer")
    assert proc.returncode == 2 and "--resume" in err and "Traceback" not in err
    assert status["state"] == "interrupted"
    ck = torch.load(run_dir / "last.pt", weights_only=False)
    assert ck["step"] > 0  # a mid-epoch checkpoint
    subprocess.run(cli(tmp_path, "--resume"), check=True, capture_output=True, timeout=300)
    _same(result(tmp_path), straight)


def test_stop_seen_at_an_epoch_end_marks_the_run_interrupted(tiny, tmp_path, monkeypatch):
    """A signal that lands during validation stops the run after that epoch; status.json must say
    "interrupted" there too (it said "running" for a dead run, which `wslbench tables` relays)."""
    from wslbench.errors import RunInterrupted
    from wslbench.train import trainer as trainer_module

    trainer = Trainer(tiny("cam-avg", epochs=3), tmp_path)
    real = trainer._validate
    monkeypatch.setitem(trainer_module._STOP, "requested", False)

    def validate_then_signal():
        out = real()
        trainer_module._STOP["requested"] = True  # what the SIGTERM handler does
        return out

    monkeypatch.setattr(trainer, "_validate", validate_then_signal)
    with pytest.raises(RunInterrupted, match="after epoch 1"):
        trainer.fit()
    status = json.loads((tmp_path / "status.json").read_text())
    assert (status["state"], status["epoch"]) == ("interrupted", 1)
    ck = torch.load(tmp_path / "last.pt", weights_only=False)
    assert ck["epoch"] == 1 and "partial" not in ck  # an epoch-end checkpoint, resumable as such


def test_sigkill_then_resume_matches_straight_run(straight, tmp_path):
    proc = subprocess.Popen(cli(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = tmp_path / "synthetic" / "cam-avg" / "seed0"
    _wait_for(run_dir / "last.pt", proc)
    time.sleep(0.2)
    proc.kill()
    proc.wait()
    assert not (run_dir / "eval.json").exists()
    res = subprocess.run(cli(tmp_path, "--resume"), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr  # the dead process's lock is taken over
    _same(result(tmp_path), straight)


def poison_loss(trainer, monkeypatch, after_steps: int = 0) -> None:
    """Make every training step after the first ``after_steps`` return a NaN loss."""
    real = trainer.method.training_step
    calls = {"n": 0}

    def poisoned(batch):
        calls["n"] += 1
        out = real(batch)
        if calls["n"] > after_steps:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(trainer.method, "training_step", poisoned)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny, tmp_path, monkeypatch):
    cfg = tiny("cam-avg", epochs=3)
    trainer = Trainer(cfg, tmp_path)
    poison_loss(trainer, monkeypatch, after_steps=3 * 2)  # 3 batches per epoch: the 7th step (epoch 3) diverges
    with pytest.raises(TrainingDiverged, match="non-finite loss"):
        trainer.fit()
    ck = torch.load(tmp_path / "last.pt", weights_only=False)
    assert ck["epoch"] == 2 and all(torch.isfinite(v).all() for v in ck["method"].values() if v.is_floating_point())
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "failed"
    assert not (tmp_path / "run.lock").exists()


def test_nan_loss_with_on_nonfinite_evaluate_scores_the_kept_checkpoint(tiny, tmp_path, monkeypatch):
    """train.on_nonfinite=evaluate: training ends at the non-finite loss, the checkpoint the selection
    rule kept (not the diverging weights) is scored, and eval.json and the tables say it diverged."""
    from wslbench.tables import build_tables, collect_runs

    run_dir = tmp_path / "synthetic" / "cam-avg" / "seed0"
    trainer = Trainer(tiny("cam-avg", epochs=4, extra=["train.on_nonfinite=evaluate"]), run_dir)
    poison_loss(trainer, monkeypatch, after_steps=3 * 2)  # 3 batches per epoch: the 7th step (epoch 3) diverges
    result = trainer.fit()
    ev = json.loads((run_dir / "eval.json").read_text())
    best = torch.load(run_dir / "best.pt", weights_only=False)
    assert ev["diverged_at_epoch"] == 3 and ev["epochs_run"] == 2 and result["diverged_at_epoch"] == 3
    assert ev["diverged"] == "non-finite loss (nan) at epoch 3, step 1"
    assert ev["checkpoint_epoch"] == best["epoch"] in (1, 2)
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2
    captions = {t.number: t.caption for t in build_tables(collect_runs(tmp_path))}
    for number in (1, 2):  # classification error; F1+ and F1-
        assert "Training diverged (non-finite loss) in: CAM-Avg Synthetic seed 0 (epoch 3);" in captions[number]


def test_nan_loss_before_any_kept_epoch_still_stops_with_on_nonfinite_evaluate(tiny, tmp_path, monkeypatch):
    trainer = Trainer(tiny("cam-avg", epochs=2, extra=["train.on_nonfinite=evaluate"]), tmp_path)
    poison_loss(trainer, monkeypatch)  # the very first step
    with pytest.raises(TrainingDiverged, match="non-finite loss") as raised:
        trainer.fit()
    assert (raised.value.epoch, raised.value.step) == (1, 1) and raised.value.loss != raised.value.loss  # NaN
    copy = pickle.loads(pickle.dumps(raised.value))  # as it would travel from a worker process
    assert str(copy) == str(raised.value) and (copy.epoch, copy.step) == (1, 1)
    assert not (tmp_path / "eval.json").exists()


def test_lock_refuses_second_writer_and_takes_over_stale(tmp_path, tiny):
    with RunLock(tmp_path):
        with pytest.raises(WslbenchError, match="in use by another run"):
            RunLock(tmp_path).acquire()
        with pytest.raises(WslbenchError, match="in use"):
            Trainer(tiny("cam-avg", epochs=1), tmp_path).fit()
    (tmp_path / "run.lock").write_text(json.dumps({"host": os.uname().nodename, "pid": 2 ** 22 + 12345}))
    with RunLock(tmp_path) as lock:  # a dead owner's lock is taken over
        assert lock.held


def test_finished_run_is_never_overwritten(tiny, tmp_path):
    run(tiny("cam-avg", epochs=1), run_dir=tmp_path)
    before = {p: (tmp_path / p).read_bytes() for p in ("eval.json", "best.pt")}
    res = CliRunner().invoke(main, ["run", *ARGS, "--epochs", "1", "--out", str(tmp_path / "x")])
    assert res.exit_code == 0  # another folder: fine
    with pytest.raises(WslbenchError, match="never overwritten"):
        Trainer(tiny("cam-avg", epochs=2), tmp_path).fit()
    again = Trainer(tiny("cam-avg", epochs=1), tmp_path, resume=True).fit()
    assert again["f1_pos"] == json.loads(before["eval.json"])["f1_pos"]
    assert all((tmp_path / p).read_bytes() == b for p, b in before.items())


def test_an_evaluation_stopped_part_way_resumes_with_the_maps_it_made(tiny, tmp_path, monkeypatch):
    """A signal during the test evaluation stops it after the current image; the same run resumed
    predicts only the images left, and scores exactly what an unbroken evaluation scores."""
    from wslbench.errors import RunInterrupted
    from wslbench.train import trainer as trainer_module

    cfg = tiny("cam-avg", epochs=1, extra=["train.max_steps_per_epoch=2", "data.eval_batch_size=1"])
    straight = tmp_path / "straight"
    run(cfg, run_dir=straight)
    monkeypatch.setitem(trainer_module._STOP, "requested", False)
    calls = []

    def counting(trainer, stop_after=None):
        """Count the test evaluation's predictions (not validation's); signal after ``stop_after``."""
        real_predict, real_evaluate = trainer.method.predict, trainer.evaluate_test

        def predict(images):
            calls.append(images.shape[0])
            if stop_after is not None and len(calls) == stop_after:
                trainer_module._STOP["requested"] = True  # what the SIGTERM handler does
            return real_predict(images)

        def evaluate_test(*args, **kwargs):
            monkeypatch.setattr(trainer.method, "predict", predict)
            return real_evaluate(*args, **kwargs)

        monkeypatch.setattr(trainer, "evaluate_test", evaluate_test)
        return trainer

    broken = tmp_path / "broken"
    with pytest.raises(RunInterrupted, match="maps of 5 images are kept"):
        counting(Trainer(cfg, broken), stop_after=5).fit()
    status = json.loads((broken / "status.json").read_text())
    assert (status["state"], status["maps_kept"]) == ("interrupted", 5)
    assert not (broken / "eval.json").exists()
    assert len(list((broken / "eval_cache" / "maps").glob("*.npz"))) == 5

    trainer_module._STOP["requested"] = False
    calls.clear()
    counting(Trainer(cfg, broken, resume=True)).fit()
    # the 5 test maps made before the stop are not predicted again; the 12 validation maps the
    # record stores (wslbench.stored_maps) come after the test maps
    assert len(calls) == 12 - 5 + 12
    assert not (broken / "eval_cache").exists()
    assert json.loads((broken / "status.json").read_text())["state"] == "finished"
    a, b = (json.loads((d / "eval.json").read_text()) for d in (straight, broken))
    for k in ("cls_error", "f1_pos", "f1_neg", "pxap", "n_images"):
        assert a[k] == b[k], k
    assert (straight / "per_image.csv").read_bytes() == (broken / "per_image.csv").read_bytes()


def test_map_cache_holds_the_maps_of_one_set_of_weights_only(tmp_path):
    """A cache made under other weights (or settings) is emptied; the same weights keep it."""
    import numpy as np

    from baselines.cam import CamAvg
    from wslbench.evaluate import MapCache, map_fingerprint

    torch.manual_seed(0)
    model = CamAvg(num_classes=2, backbone="test_resnet")
    key = map_fingerprint(model, {"split": "test"})
    prob = np.random.default_rng(0).random((5, 7)).astype(np.float32)
    MapCache(tmp_path / "c", key).put("sub/img1", prob, 1)
    MapCache(tmp_path / "c", key).put("img2", prob, None)
    kept = MapCache(tmp_path / "c", map_fingerprint(model, {"split": "test"}))
    got, label, stored, recipe = kept.get("sub/img1")
    assert stored is None and recipe is None  # put without a native map
    assert np.array_equal(got, prob) and label == 1 and kept.get("img2")[1] is None and len(kept) == 2
    assert map_fingerprint(model, {"split": "val"}) != key
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-6  # one weight, barely moved
    moved = MapCache(tmp_path / "c", map_fingerprint(model, {"split": "test"}))
    assert len(moved) == 0 and moved.get("sub/img1") is None
    (moved.folder / "maps").mkdir(parents=True)
    (moved.folder / "maps" / "torn.npz").write_bytes(b"PK\x03")  # a file cut short: predicted again
    assert moved.get("torn") is None


def test_a_run_that_stopped_early_and_was_stopped_in_its_evaluation_does_not_train_again(tiny, tmp_path, monkeypatch):
    """Patience spent, then a signal during the test evaluation: the resumed run evaluates the
    same checkpoint and trains no further epoch."""
    from wslbench.errors import RunInterrupted
    from wslbench.train import trainer as trainer_module

    cfg = tiny("cam-avg", epochs=4, extra=["train.max_steps_per_epoch=1", "data.eval_batch_size=1", "train.patience=1"])
    monkeypatch.setitem(trainer_module._STOP, "requested", False)

    def build(**kw):
        t = Trainer(cfg, tmp_path, **kw)
        monkeypatch.setattr(t.protocol, "is_best", lambda value, best, mode: (best is None, best is None))
        real = t.evaluate_test

        def evaluate_test(*args, **kwargs):
            trainer_module._STOP["requested"] = True  # a signal as the test evaluation starts
            return real(*args, **kwargs)

        monkeypatch.setattr(t, "evaluate_test", evaluate_test)
        return t

    with pytest.raises(RunInterrupted):
        build().fit()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2  # epoch 1 best, epoch 2 not: stop
    trainer_module._STOP["requested"] = False
    t = Trainer(cfg, tmp_path, resume=True)
    monkeypatch.setattr(t.protocol, "is_best", lambda value, best, mode: (best is None, best is None))
    ev = t.fit()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    assert ev["stopped_early"] is True and ev["epochs_run"] == 2 and ev["checkpoint_epoch"] == 1
