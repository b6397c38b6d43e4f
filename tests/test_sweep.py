"""Sweeps: grid expansion, disjoint shards covering the grid, skip finished, resume interrupted."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from wslbench.cli import main
from wslbench.sweep import expand, load_spec, shard

TINY = ["train.progress=false", "data.n_train=16", "data.n_val=8", "data.n_test=8", "data.image_size=48",
        "data.batch_size=8", "train.epochs=1"]


def write_spec(tmp_path, **extra):
    spec = {"methods": ["all-ones", "cam-avg"], "datasets": ["synthetic"], "seeds": [0, 1], "set": TINY,
            "variants": [{"method": "cam-max", "tag": "big", "set": ["train.epochs=2"]}], **extra}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_expand_and_shards_partition_the_grid(tmp_path):
    jobs = expand(load_spec(write_spec(tmp_path)))
    assert [j.name for j in jobs] == ["synthetic/all-ones/seed0", "synthetic/all-ones/seed1", "synthetic/cam-avg/seed0",
                                      "synthetic/cam-avg/seed1", "synthetic/cam-max+big/seed0", "synthetic/cam-max+big/seed1"]
    assert jobs[-1].overrides[-1] == "train.epochs=2"
    parts = [shard(jobs, i, 4) for i in range(4)]
    names = [j.name for p in parts for j in p]
    assert sorted(names) == sorted(j.name for j in jobs) and len(set(names)) == len(jobs)
    assert [j.name for j in shard(jobs, 1, 4)] == [j.name for j in shard(expand(load_spec(write_spec(tmp_path))), 1, 4)]


def test_seed_major_order_gives_every_method_of_a_seed_first(tmp_path):
    spec = load_spec(write_spec(tmp_path, methods=["all-ones", "cam-max", "cam-avg"], order="seeds"))
    names = [j.name for j in expand(spec)]
    # variants follow their own method; seed 0 of every row before any seed 1
    assert names == ["synthetic/all-ones/seed0", "synthetic/cam-max/seed0", "synthetic/cam-max+big/seed0",
                     "synthetic/cam-avg/seed0", "synthetic/all-ones/seed1", "synthetic/cam-max/seed1",
                     "synthetic/cam-max+big/seed1", "synthetic/cam-avg/seed1"]
    with pytest.raises(Exception, match="order must be one of"):
        expand({**spec, "order": "random"})


def test_a_sweep_file_can_extend_another_and_append_overrides(tmp_path):
    base = write_spec(tmp_path, experiment="base_exp", order="seeds")
    child = tmp_path / "long.yaml"
    child.write_text(yaml.safe_dump({"extends": "sweep.yaml", "experiment": "long_exp",
                                     "methods": ["cam-avg", "all-ones"], "set": ["train.epochs=3"]}))
    spec = load_spec(child)
    assert spec["seeds"] == [0, 1] and spec["order"] == "seeds" and "extends" not in spec  # kept from the base
    assert spec["set"] == TINY + ["train.epochs=3"]  # appended after the base's: the later value wins
    jobs = expand(spec)
    assert [j.name for j in jobs[:3]] == ["long_exp/synthetic/cam-avg/seed0", "long_exp/synthetic/all-ones/seed0",
                                          "long_exp/synthetic/cam-max+big/seed0"]  # methods replaced, variants kept
    from wslbench.sweep import job_config
    assert job_config(jobs[0]).train.epochs == 3 and job_config(jobs[2]).train.epochs == 2
    assert {j.name.split("/")[0] for j in expand(load_spec(base))} == {"base_exp"}


def test_extending_sweep_files_refuse_a_shared_experiment_a_cycle_or_a_missing_base(tmp_path):
    write_spec(tmp_path, experiment="base_exp")
    same = tmp_path / "same.yaml"
    same.write_text(yaml.safe_dump({"extends": "sweep.yaml", "set": ["train.epochs=3"]}))
    res = CliRunner().invoke(main, ["sweep", str(same), "--dry-run"])
    assert res.exit_code == 2 and "needs its own 'experiment'" in res.output and "base_exp" in res.output
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"extends": "b.yaml", "experiment": "a"}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"extends": "a.yaml", "experiment": "b"}))
    res = CliRunner().invoke(main, ["sweep", str(tmp_path / "a.yaml"), "--dry-run"])
    assert res.exit_code == 2 and "makes a cycle" in res.output
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"extends": "nowhere.yaml", "experiment": "c"}))
    res = CliRunner().invoke(main, ["sweep", str(tmp_path / "c.yaml"), "--dry-run"])
    assert res.exit_code == 2 and "no such file" in res.output and "nowhere.yaml" in res.output


def test_posthoc_rows_follow_their_seed_and_name_a_source_row(tmp_path):
    spec = load_spec(write_spec(tmp_path, methods=["gradcam", "cam-avg"], variants=[], order="seeds",
                                posthoc={"from": "gradcam", "methods": ["layercam", "eigencam"]}))
    jobs = expand(spec)
    assert [j.name for j in jobs] == [f"synthetic/{m}/seed{k}" for k in (0, 1)
                                      for m in ("gradcam", "cam-avg", "layercam", "eigencam")]
    assert [j.source for j in jobs[:4]] == [None, None, "gradcam", "gradcam"]
    by_method = [j.name for j in expand({**spec, "order": "methods"})]
    assert by_method[4:] == ["synthetic/layercam/seed0", "synthetic/layercam/seed1",
                             "synthetic/eigencam/seed0", "synthetic/eigencam/seed1"]
    # a slow method can wait for the end of the grid instead of holding up the next seed
    split = expand({**spec, "posthoc": [{"from": "gradcam", "methods": ["layercam"]},
                                        {"from": "gradcam", "methods": ["scorecam"], "at": "end"}]})
    assert [j.name for j in split] == ["synthetic/gradcam/seed0", "synthetic/cam-avg/seed0", "synthetic/layercam/seed0",
                                       "synthetic/gradcam/seed1", "synthetic/cam-avg/seed1", "synthetic/layercam/seed1",
                                       "synthetic/scorecam/seed0", "synthetic/scorecam/seed1"]
    for bad in ({"from": "unet", "methods": ["layercam"]}, {"from": "gradcam"}, {"from": "gradcam", "methods": []},
                {"from": "gradcam", "methods": ["layercam"], "at": "later"}):
        with pytest.raises(Exception, match="posthoc"):
            expand({**spec, "posthoc": bad})


def test_sweep_evaluates_posthoc_rows_once_their_source_finished(tmp_path):
    spec = tmp_path / "posthoc.yaml"
    spec.write_text(yaml.safe_dump({"experiment": "exp", "methods": ["gradcam"], "datasets": ["synthetic"], "seeds": [0],
                                    "set": TINY, "posthoc": {"from": "gradcam", "methods": ["layercam"]}}))
    out = tmp_path / "runs"
    early = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out), "--shard", "1/2"])  # layercam's shard
    assert early.exit_code == 0 and "0 ran" in early.output and "1 waiting for their source run" in early.output
    assert not (out / "exp" / "synthetic" / "layercam").exists()
    res = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out)])
    assert res.exit_code == 0 and "2 ran" in res.output, res.output
    source = out / "exp" / "synthetic" / "gradcam" / "seed0"
    ev = json.loads((out / "exp" / "synthetic" / "layercam" / "seed0" / "eval.json").read_text())
    assert ev["from_run"] == str(source) and ev["epochs_run"] == 0  # the path as the sweep's --out names it
    assert "0 ran, 2 already finished" in CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out)]).output
    # a clone of committed records has no checkpoints: a finished post-hoc row needs none, and a
    # post-hoc job whose source lost its classifier fails alone, with a message that says why
    (source / "best.pt").unlink()
    again = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out)])
    assert again.exit_code == 0 and "0 ran, 2 already finished" in again.output, again.output
    shutil.rmtree(out / "exp" / "synthetic" / "layercam" / "seed0")
    dry = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out), "--dry-run"])
    assert "layercam/seed0: would evaluate the classifier of" in dry.output and "its source has no best.pt" in dry.output
    failed = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out)])
    assert failed.exit_code != 0 and "Traceback" not in failed.output, failed.output
    assert "layercam/seed0: FAILED: --from" in failed.output and "committed without their checkpoints" in failed.output
    assert "1 failed" in failed.output


def test_sweep_stopped_in_score_cam_resumes_in_a_fresh_clone_and_says_what_it_kept(tmp_path, monkeypatch):
    """The production case: Score-CAM's evaluation outlives the process that started it. A signal
    during its test evaluation stops the sweep; in a fresh clone (no git-ignored map cache, the
    committed eval_progress only) ``--dry-run`` and the next sweep say how many test images are kept, and
    the next sweep computes Score-CAM weights for the other images only (and then for the
    validation images whose maps the record stores)."""
    import pytorch_grad_cam

    from wslbench.train import trainer as trainer_module

    spec = tmp_path / "posthoc.yaml"
    spec.write_text(yaml.safe_dump({"experiment": "exp", "methods": ["gradcam"], "datasets": ["synthetic"], "seeds": [0],
                                    "set": [*TINY, "data.eval_batch_size=1"],
                                    "posthoc": {"from": "gradcam", "methods": ["scorecam"]}}))
    out = tmp_path / "runs"
    monkeypatch.setitem(trainer_module._STOP, "requested", False)
    weighed, real = [], pytorch_grad_cam.ScoreCAM.get_cam_weights

    def get_cam_weights(self, input_tensor, *args):
        weighed.append(input_tensor.shape[0])
        if len(weighed) == 3 and stop:
            trainer_module._STOP["requested"] = True  # what the SIGTERM handler does
        return real(self, input_tensor, *args)

    monkeypatch.setattr(pytorch_grad_cam.ScoreCAM, "get_cam_weights", get_cam_weights)
    stop = True
    res = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out)])
    run_dir = out / "exp" / "synthetic" / "scorecam" / "seed0"
    assert res.exit_code == 2 and "sweep stopped by a signal during exp/synthetic/scorecam/seed0" in res.output, res.output
    assert json.loads((run_dir / "status.json").read_text())["state"] == "interrupted"
    trainer_module._STOP["requested"] = False
    shutil.rmtree(run_dir / "eval_cache")  # git-ignored: a clone of the committed records has eval_progress only
    dry = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out), "--dry-run"])
    assert "scorecam/seed0: would evaluate the classifier of" in dry.output
    assert "(3 test images kept from a stopped evaluation)" in dry.output and "1 planned" in dry.output
    stop, weighed[:] = False, []
    res = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out)])
    assert res.exit_code == 0 and "scorecam/seed0: resuming (3 test images kept" in res.output, res.output
    assert len(weighed) == 8 - 3 + 8 and json.loads((run_dir / "status.json").read_text())["state"] == "finished"
    assert not (run_dir / "eval_cache").exists() and not (run_dir / "eval_progress").exists()


def test_paper_protocol_has_every_method_dataset_and_the_no_erasing_variant():
    from conftest import REPO

    jobs = expand(load_spec(REPO / "experiments" / "paper.yaml"))
    assert {j.dataset for j in jobs} == {"glas", "cub5", "cub", "oxf"}
    assert {"minmax", "cam-avg", "unet", "all-ones", "deepmil", "gradcam", "wildcat", "cam-max", "cam-lse"} <= {j.method for j in jobs}
    assert any(j.tag == "noerase" and "model.erase_depth=0" in j.overrides for j in jobs)


@pytest.mark.parametrize("name", sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "experiments").glob("*.yaml")))
def test_committed_sweep_files_resolve_every_job(name):
    """A typo in a committed sweep file (unknown key, bad value) fails here, not hours into a sweep."""
    from conftest import REPO

    from wslbench.sweep import job_config

    jobs = expand(load_spec(REPO / "experiments" / f"{name}.yaml"))
    assert jobs
    for job in jobs:
        cfg = job_config(job)
        assert cfg.method == job.method and cfg.seed == job.seed


def test_sweep_runs_skips_finished_and_resumes(tmp_path):
    spec = write_spec(tmp_path)
    out = tmp_path / "runs"
    res = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out), "--shard", "0/2"])
    assert res.exit_code == 0, res.output
    assert "3 ran" in res.output
    done = sorted(p.parent.relative_to(out).as_posix() for p in out.glob("*/*/seed*/eval.json"))
    assert done == ["synthetic/all-ones/seed0", "synthetic/cam-avg/seed0", "synthetic/cam-max+big/seed0"]
    # a run that died after its first epoch: resumed, not restarted
    full = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out), "--shard", "1/2", "--dry-run"])
    assert "would run" in full.output and "3 planned" in full.output
    res = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out)])
    assert res.exit_code == 0 and "3 ran, 3 already finished" in res.output
    victim = out / "synthetic" / "cam-max+big" / "seed1"
    (victim / "eval.json").unlink()
    (victim / "status.json").write_text(json.dumps({"state": "running"}))
    before = (victim / "metrics.jsonl").read_text().splitlines()[0]
    res = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out)])
    assert res.exit_code == 0 and "resuming" in res.output and "1 ran, 5 already finished" in res.output
    assert (victim / "metrics.jsonl").read_text().splitlines()[0] == before  # epoch 1 kept, not redone
    again = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out)])
    assert "0 ran, 6 already finished" in again.output  # nothing left to do
    assert "differs" not in again.output
    # the sweep file changed after the runs: still skipped (the records are what ran), but said
    changed = write_spec(tmp_path, set=[*TINY, "optim.lr=0.5"])
    said = CliRunner().invoke(main, ["sweep", str(changed), "--out", str(out), "--dry-run"])
    assert said.output.count("its record differs from the sweep file: optim.lr ") == 6 and said.output.count("-> 0.5") == 6
    tables = CliRunner().invoke(main, ["tables", "--runs", str(out), "--out", str(tmp_path / "t")])
    assert tables.exit_code == 0 and "6 finished run(s)" in tables.output


def test_bad_sweep_files_are_clear(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"methods": ["cam-avg"], "datasets": ["synthetic"], "seeds": [0], "sets": []}))
    res = CliRunner().invoke(main, ["sweep", str(bad)])
    assert res.exit_code == 2 and "unknown key" in res.output
    res = CliRunner().invoke(main, ["sweep", str(write_spec(tmp_path)), "--shard", "4/4"])
    assert res.exit_code == 2 and "0 <= i < n" in res.output


def test_sigterm_stops_the_sweep_cleanly(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    spec = tmp_path / "long.yaml"
    spec.write_text(yaml.safe_dump({"methods": ["cam-avg"], "datasets": ["synthetic"], "seeds": [0, 1, 2, 3],
                                    "set": TINY[:-1] + ["train.epochs=3", "data.n_train=64"]}))
    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "wslbench.cli", "sweep", str(spec), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    t0 = time.time()
    while not (out / "synthetic" / "cam-avg" / "seed0" / "last.pt").exists():
        assert proc.poll() is None and time.time() - t0 < 120
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert "run the same command again" in err or "--resume" in err
    assert "Traceback" not in err
    assert not (out / "synthetic" / "cam-avg" / "seed3").exists()  # later runs not started
    res = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out)])
    assert res.exit_code == 0 and "already finished" in res.output and len(list(out.glob("*/*/seed*/eval.json"))) == 4


SIGNAL_BETWEEN_RUNS = """
import os, signal, sys
import wslbench.train
from wslbench.errors import RunInterrupted
from wslbench.sweep import run_sweep

calls = []
def fake_run(cfg, out, resume):  # returns with its own handler gone, then the signal lands
    calls.append(cfg.method)
    os.kill(os.getpid(), signal.SIGTERM)
wslbench.train.run = fake_run
try:
    run_sweep(sys.argv[1], out=sys.argv[2], echo=lambda *a: None)
except RunInterrupted as exc:
    print("interrupted:", exc, "| runs:", len(calls))
"""


def test_a_signal_between_two_runs_stops_the_sweep_cleanly(tmp_path):
    """Between two runs (and while one is being built) no trainer handler is installed: the
    sweep's own must turn SIGTERM into a clean stop, not let it kill the process."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", SIGNAL_BETWEEN_RUNS, str(write_spec(tmp_path)), str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "interrupted: sweep stopped by a signal after synthetic/all-ones/seed0" in proc.stdout
    assert "run the same command again" in proc.stdout and "| runs: 1" in proc.stdout
    assert "SIGTERM: stopping the sweep after the current job" in proc.stderr


def test_sigterm_to_the_whole_process_group_still_stops_cleanly(tmp_path):
    """SLURM and ``kill -- -PGID`` signal the loader workers too: the run must still save its
    checkpoint and stop with one message, not die on 'DataLoader worker is killed'."""
    import os
    import signal
    import subprocess
    import sys
    import time

    spec = tmp_path / "group.yaml"
    spec.write_text(yaml.safe_dump({"methods": ["cam-avg"], "datasets": ["synthetic"], "seeds": [0, 1],
                                    "set": TINY[:-1] + ["train.epochs=3", "data.n_train=64", "data.num_workers=1"]}))
    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "wslbench.cli", "sweep", str(spec), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    t0 = time.time()
    while not (out / "synthetic" / "cam-avg" / "seed0" / "last.pt").exists():
        assert proc.poll() is None and time.time() - t0 < 120
        time.sleep(0.05)
    time.sleep(0.5)  # into the next epoch, workers running
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert "Traceback" not in err and "killed by signal" not in err, err
    assert "run the same command again" in err or "--resume" in err
    status = json.loads((out / "synthetic" / "cam-avg" / "seed0" / "status.json").read_text())
    assert status["state"] != "failed", status
