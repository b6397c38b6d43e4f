"""torchrun with 2 CPU processes (gloo) gives the same training and validation numbers as one
process with the same global batch. The backbone is BatchNorm-free (GroupNorm), so the local
batch size does not change the maths: equality holds in principle, up to float summation
order. Augmentation is on: it is seeded per sample, so ranks and workers do not change it."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

COMMON = ["--dataset", "synthetic", "--epochs", "2",
        "--set", "model.backbone=test_efficientnet_gn", "--set", "model.output_stride=null",
        "--set", "data.n_train=32", "--set", "data.n_val=16", "--set", "data.n_test=16",
        "--set", "data.image_size=64", "--set", "data.batch_size=16", "--set", "train.progress=false"]
METHODS = {
    "cam-avg": [],
    # min-max with erasing from the first step; the pseudo mask normalised per image (with the
    # authors' batch-wide normalisation, M+ depends on which images share a process's batch)
    # NF-Net trunk: no activation normalisation at all. (GroupNorm is unusable here: a sample
    # that earns no trust gets M_bar = 0, and an all-zero x+ through GroupNorm has zero
    # variance, whose gradient blows up to ~1e25 over the layers; BatchNorm pools the batch.)
    "minmax": ["--set", "model.erase_depth=2", "--set", "model.erase_start_epoch=0", "--set", "model.mask_norm=image",
               "--set", "model.backbone=test_nfnet"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def history(out, method):
    d = out / "synthetic" / method / "seed0"
    return [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()], json.loads((d / "eval.json").read_text())


@pytest.mark.parametrize("method", sorted(METHODS))
def test_two_process_gloo_equals_one_process(tmp_path, method):
    ARGS = ["run", "--method", method, *COMMON, *METHODS[method]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    one = subprocess.run([sys.executable, "-m", "wslbench.cli", *ARGS, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                          "-m", "wslbench.cli", *ARGS, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    h1, ev1 = history(tmp_path / "one", method)
    h2, ev2 = history(tmp_path / "two", method)
    assert len(h1) == len(h2) == 2
    for a, b in zip(h1, h2):
        assert a["val_error"] == b["val_error"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    assert ev1["cls_error"] == ev2["cls_error"]
    assert ev1["f1_pos"] == pytest.approx(ev2["f1_pos"], abs=1e-3)
    if method == "minmax":  # erasing ran, and the same number of steps on average
        assert h1[0]["train_erase_steps"] > 0
        assert h1[0]["train_erase_steps"] == pytest.approx(h2[0]["train_erase_steps"])
    env2 = json.loads((tmp_path / "two" / "synthetic" / method / "seed0" / "env.json").read_text())
    assert env2.get("world_size") == 2


def test_process_group_is_left_before_interpreter_exit(monkeypatch):
    """A rank that finishes leaves its process group at exit: a gloo group alive during
    interpreter teardown aborted rank 1 once after a finished two-process run (SIGABRT)."""
    import torch.distributed as dist

    from wslbench.train import distributed

    hooks = []
    real_init = dist.init_process_group
    monkeypatch.setattr(distributed.atexit, "register", hooks.append)
    # one real gloo rank stands in for torchrun's group (WORLD_SIZE=2 only takes the branch)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: real_init(
        backend, store=dist.HashStore(), rank=0, world_size=1))
    monkeypatch.setenv("WORLD_SIZE", "2")
    info = distributed.init_from_env("cpu")
    try:
        assert info.world_size == 1 and dist.is_initialized() and len(hooks) == 1
        hooks[0]()
        assert not dist.is_initialized()
    finally:
        distributed.leave()
