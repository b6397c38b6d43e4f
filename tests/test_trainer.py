"""The one trainer: same seed -> same numbers; a resumed run ends where an uninterrupted one does."""
import json
import platform

import pytest
import torch

from conftest import tiny_config
from wslbench.io import read_jsonl
from wslbench.train import Trainer, run

VOLATILE = {"epoch_time_s", "images_per_s", "train_time_s"}


def _strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in VOLATILE}


def _result(run_dir):
    ev = json.loads((run_dir / "eval.json").read_text())
    hist = [_strip(r) for r in read_jsonl(run_dir / "metrics.jsonl")]
    return _strip(ev), hist


# bf16 autocast + channels_last on any CPU; one thread: bf16's many small parallel regions make
# two OpenMP threads spin on a loaded machine (results/benchmarks.md)
FAST = ["train.amp=true", "train.channels_last=true", "train.num_threads=1"]


@pytest.fixture
def keep_threads():
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_same_seed_gives_bit_identical_metrics(tmp_path, keep_threads):
    # in the CPU fast path (bf16 + channels_last); the fp32 default is covered by the resume test
    cfg = tiny_config(epochs=2, extra=FAST)
    run(cfg, run_dir=tmp_path / "a")
    run(cfg, run_dir=tmp_path / "b")
    env = json.loads((tmp_path / "a" / "env.json").read_text())
    assert env["amp_dtype"] == "bf16" and env["channels_last"] is True and "train.amp=true" in env["amp_reason"]
    assert env["torch_threads"] == 1
    ev_a, hist_a = _result(tmp_path / "a")
    ev_b, hist_b = _result(tmp_path / "b")
    assert hist_a == hist_b  # exact float equality of losses and val errors
    assert ev_a == ev_b
    assert (tmp_path / "a" / "per_image.csv").read_text() == (tmp_path / "b" / "per_image.csv").read_text()
    # and the seed matters: another seed trains differently
    run(tiny_config(epochs=2, seed=1, extra=FAST), run_dir=tmp_path / "c")
    _, hist_c = _result(tmp_path / "c")
    assert [r["train_loss"] for r in hist_c] != [r["train_loss"] for r in hist_a]


def test_resume_reaches_the_same_final_metrics(tmp_path):
    full = tiny_config(epochs=3)
    run(full, run_dir=tmp_path / "full")
    run(tiny_config(epochs=1), run_dir=tmp_path / "part")  # "dies" after epoch 1:
    (tmp_path / "part" / "eval.json").unlink()  # a dead run has no result and is not finished
    (tmp_path / "part" / "status.json").write_text('{"state": "running"}')
    recorded = tmp_path / "part" / "config.yaml"  # as the 3-epoch run that died would have recorded it
    recorded.write_text(recorded.read_text().replace("epochs: 1\n", "epochs: 3\n", 1))
    # the first part "ran" on another machine at another commit: env.json must keep that
    env_path = tmp_path / "part" / "env.json"
    first = {**json.loads(env_path.read_text()), "cpu_capability": "OTHER_CPU", "git_commit": "0" * 40, "hostname": "elsewhere"}
    env_path.write_text(json.dumps(first))
    Trainer(full, tmp_path / "part", resume=True).fit()
    env = json.loads(env_path.read_text())
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()  # the part that runs now
    assert [(s["from_epoch"], s["cpu_capability"], s["git_commit"], s["hostname"]) for s in env["segments"]] == [
        (0, "OTHER_CPU", "0" * 40, "elsewhere"),
        (1, env["cpu_capability"], env["git_commit"], env["hostname"])]
    ev_full, hist_full = _result(tmp_path / "full")
    ev_part, hist_part = _result(tmp_path / "part")
    assert len(hist_part) == 3
    assert hist_part == hist_full
    assert {k: v for k, v in ev_part.items() if k != "epochs_run"} == {k: v for k, v in ev_full.items() if k != "epochs_run"}


def test_run_directory_contents(tmp_path):
    out = tmp_path / "runs"
    cfg = tiny_config(epochs=1)
    run(cfg, out=out)
    d = out / "synthetic" / "cam-avg" / "seed0"
    for name in ("config.yaml", "env.json", "metrics.jsonl", "last.pt", "best.pt", "eval.json", "per_image.csv", "status.json"):
        assert (d / name).is_file(), name
    env = json.loads((d / "env.json").read_text())
    assert {"git_commit", "torch", "timm", "device", "amp_reason", "channels_last_reason"} <= set(env)
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()  # e.g. AVX2, AVX512
    assert env["amp_dtype"] in ("bf16", "fp32") and isinstance(env["channels_last"], bool)
    assert env["amp"] == "float32"  # the CPU runs without autocast: env.json says so
    assert env["keep_freed_memory"] is (platform.libc_ver()[0] == "glibc")  # auto: on a CPU with glibc
    assert "train.keep_freed_memory=auto on cpu" in env["keep_freed_memory_reason"]
    ev = json.loads((d / "eval.json").read_text())
    assert 0 <= ev["cls_error"] <= 100 and 0 <= ev["f1_pos"] <= 1 and 0 <= ev["f1_neg"] <= 1
    assert ev["n_images"] == 12 and len(list((d / "masks").glob("*.png"))) == 12
    assert json.loads((d / "status.json").read_text())["state"] == "finished"


def test_env_json_records_the_command_as_typed(tmp_path, monkeypatch):
    """env.json's argv is the program's name and the arguments as typed: not the absolute path
    of the interpreter's script (a path of one machine), and no argument rewritten."""
    import sys

    typed = ["run", "--method", "cam-avg", "--out", "/somewhere/else/runs", "--set", "data.root=../data"]
    monkeypatch.setattr(sys, "argv", ["/home/someone/checkout/.venv/bin/wslbench", *typed])
    run(tiny_config(epochs=1), run_dir=tmp_path / "r")
    env = json.loads((tmp_path / "r" / "env.json").read_text())
    assert env["argv"] == ["wslbench", *typed]


def test_learning_rate_steps_down_to_a_floor(tmp_path):
    cfg = tiny_config(epochs=4, extra=["optim.lr=0.1", "optim.step_size=1", "optim.gamma=0.1", "optim.min_lr=0.002"])
    run(cfg, run_dir=tmp_path / "r")
    lrs = [r["lr"] for r in read_jsonl(tmp_path / "r" / "metrics.jsonl")]
    assert lrs == pytest.approx([0.1, 0.01, 0.002, 0.002])


def test_early_stopping_stops_after_patience(tmp_path):
    # lr 0 -> the model never changes -> val error never improves after epoch 1
    cfg = tiny_config(epochs=6, extra=["optim.lr=0.0", "train.patience=2"])
    res = run(cfg, run_dir=tmp_path / "r")
    hist = read_jsonl(tmp_path / "r" / "metrics.jsonl")
    assert len(hist) == 3  # a tie is no improvement for the patience ...
    errors = [r["val_error"] for r in hist]
    assert errors.count(min(errors)) > 1  # (the premise: ties happen here)
    # ... but it moves the best checkpoint to the LATEST epoch with the lowest error (authors' <=)
    latest = max(i for i, e in enumerate(errors) if e == min(errors))
    assert res["stopped_early"] is True and res["checkpoint_epoch"] == latest + 1


def test_a_tie_keeps_the_later_epoch_unless_configured_otherwise(tmp_path):
    # lr 0: the weights never change, validation errors tie (batch-norm statistics aside)
    extra = ["optim.lr=0.0"]
    later = run(tiny_config(epochs=3, extra=extra), run_dir=tmp_path / "later")
    earlier = run(tiny_config(epochs=3, extra=extra + ["eval.protocol.ties=earlier"]), run_dir=tmp_path / "earlier")
    errors = [r["val_error"] for r in read_jsonl(tmp_path / "later" / "metrics.jsonl")]
    assert errors == [r["val_error"] for r in read_jsonl(tmp_path / "earlier" / "metrics.jsonl")]
    best = min(errors)
    assert errors.count(best) > 1
    assert later["checkpoint_epoch"] == 1 + max(i for i, e in enumerate(errors) if e == best)
    assert earlier["checkpoint_epoch"] == 1 + min(i for i, e in enumerate(errors) if e == best)
    assert later["checkpoint_epoch"] > earlier["checkpoint_epoch"]


def test_paper_configs_state_fp32():
    from wslbench.config import resolve

    for dataset in ("glas", "cub", "cub5", "oxf"):
        for method in ("cam-avg", "minmax"):
            assert resolve(method, dataset).train.amp is False  # the paper's runs are fp32


def test_git_state_leaves_out_run_records_but_not_the_code(tmp_path):
    """A committed run record that is resumed rewrites its config.yaml: that alone must not mark the
    code dirty, for itself or for the next run of a sweep; a modified code file must."""
    import subprocess

    from wslbench.train.trainer import git_state

    repo = tmp_path / "repo"
    run_dir = repo / "results" / "records" / "x" / "seed0"
    run_dir.mkdir(parents=True)
    elsewhere = repo / "runs" / "y" / "seed0"  # a run folder outside results/ (--out runs)
    elsewhere.mkdir(parents=True)
    (elsewhere / "config.yaml").write_text("method: y\n")
    (repo / "code.py").write_text("a = 1\n")
    (run_dir / "config.yaml").write_text("method: x\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    commit, dirty = git_state(repo, run_dir)
    assert len(commit) == 40 and dirty is False
    (run_dir / "config.yaml").write_text("method: x\ntrain: {}\n")
    assert git_state(repo, run_dir)[1] is False and git_state(repo)[1] is False
    (elsewhere / "config.yaml").write_text("method: y\ntrain: {}\n")
    assert git_state(repo, elsewhere)[1] is False and git_state(repo, run_dir)[1] is True
    (elsewhere / "config.yaml").write_text("method: y\n")
    (repo / "code.py").write_text("a = 2\n")
    assert git_state(repo, run_dir)[1] is True
