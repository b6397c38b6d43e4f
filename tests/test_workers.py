"""Loader workers: ``auto`` gives the loader only cores the training leaves free, and the worker
count (persistent or not) never changes a run's numbers."""
import json
import multiprocessing

import pytest
import torch
from torch.utils.data import DataLoader

from conftest import tiny_config
from wslbench.errors import ConfigError
from wslbench.io import read_jsonl
from wslbench.train import run
from wslbench.train.sampler import ResumableSampler
from wslbench.train.workers import MAX_AUTO_WORKERS, EpochItems, plan_workers

VOLATILE = {"epoch_time_s", "images_per_s", "train_time_s"}


@pytest.mark.parametrize("device, cores, threads, procs, expected", [
    ("cpu", 2, 2, 1, 0),    # this kind of machine: both cores train, no worker
    ("cpu", 2, 1, 1, 1),    # train.num_threads=1 leaves one core
    ("cpu", 16, 4, 1, 8),   # 12 free, capped
    ("cpu", 8, 4, 1, 4),
    ("cuda", 16, 16, 1, 8),  # on a GPU the training keeps one core busy, whatever torch's thread count
    ("cuda", 6, 16, 1, 5),
    ("cuda", 8, 1, 4, 1),   # torchrun, 4 processes on 8 cores: 2 each, one drives its GPU
    ("cuda", 4, 1, 4, 0),
])
def test_auto_counts_only_the_cores_the_training_leaves_free(device, cores, threads, procs, expected):
    plan = plan_workers("auto", device, threads, cores=cores, processes_per_node=procs)
    assert plan.num_workers == expected
    assert plan.persistent is (expected > 0)  # persistent only where there are workers
    assert plan.reason.startswith("auto: ") and f"{cores} usable cores" in plan.reason
    assert expected <= MAX_AUTO_WORKERS


def test_a_number_in_the_config_is_kept_and_persistence_can_be_turned_off():
    assert plan_workers(3, "cpu", 2, cores=2).num_workers == 3
    assert plan_workers(3, "cpu", 2, cores=2).persistent is True
    assert plan_workers(3, "cpu", 2, persistent=False, cores=2).persistent is False
    assert plan_workers(0, "cpu", 2, cores=64).num_workers == 0  # 0 stays 0 wherever
    assert "set in the config" in plan_workers(0, "cpu", 2).reason


def test_num_workers_accepts_auto_or_a_count_only():
    assert tiny_config().data["num_workers"] == "auto" and tiny_config().data["persistent_workers"] is True
    with pytest.raises(ConfigError, match="num_workers"):
        tiny_config(extra=["data.num_workers=some"])


def test_persistent_workers_see_each_epochs_augmentation():
    """The loader's workers outlive an epoch: the items must still carry the epoch the sampler drew them for."""
    ds = tiny_config().data
    from wslbench.registry import create_dataset

    train = create_dataset("synthetic", split="train", root=None, augment=True,
                           **{k: v for k, v in ds.items() if k in ("n_train", "n_val", "n_test", "image_size", "hflip",
                                                                   "vflip", "rot90", "data_seed")})

    def epochs(workers):
        sampler = ResumableSampler(train, 1, 0, seed=5)
        loader = DataLoader(EpochItems(train, 5), batch_size=8, sampler=sampler, num_workers=workers,
                            persistent_workers=workers > 0)
        out = []
        for e in range(3):
            sampler.set_epoch(e)
            out.append([(b["index"].clone(), b["image"].clone()) for b in loader])
        return out

    inline, persistent = epochs(0), epochs(1)
    for e in range(3):
        for (i0, x0), (i1, x1) in zip(inline[e], persistent[e]):
            assert torch.equal(i0, i1) and torch.equal(x0, x1), f"epoch {e}"
    # the augmentation of one sample does change across epochs, so the check above can fail
    first = {int(i): x for b in inline[0] for i, x in zip(*b)}
    later = {int(i): x for b in inline[2] for i, x in zip(*b)}
    assert any(not torch.equal(first[i], later[i]) for i in first)


def test_worker_count_leaves_a_runs_numbers_unchanged(tmp_path):
    # 3 epochs: persistent workers serve epochs 2 and 3 from the processes started for epoch 1
    results = {}
    for name, extra in {"inline": ["data.num_workers=0"], "two": ["data.num_workers=2"],
                        "two_forked_per_epoch": ["data.num_workers=2", "data.persistent_workers=false"]}.items():
        run(tiny_config(epochs=3, extra=extra), run_dir=tmp_path / name)
        hist = [{k: v for k, v in r.items() if k not in VOLATILE} for r in read_jsonl(tmp_path / name / "metrics.jsonl")]
        ev = {k: v for k, v in json.loads((tmp_path / name / "eval.json").read_text()).items() if k not in VOLATILE}
        results[name] = (hist, ev)
        assert not multiprocessing.active_children(), "a run's loader workers outlived it"
    assert results["two"] == results["inline"]
    assert results["two_forked_per_epoch"] == results["inline"]
    assert len(results["inline"][0]) == 3
    env = json.loads((tmp_path / "two" / "env.json").read_text())
    assert (env["num_workers"], env["persistent_workers"]) == (2, True)
    assert env["num_workers_reason"] == "data.num_workers=2 set in the config"


def test_env_json_says_what_auto_chose_and_why(tmp_path):
    run(tiny_config(epochs=1), run_dir=tmp_path / "r")
    env = json.loads((tmp_path / "r" / "env.json").read_text())
    expected = plan_workers("auto", "cpu", env["torch_threads"])
    assert env["num_workers"] == expected.num_workers and env["num_workers_reason"] == expected.reason
    assert env["num_workers_reason"].startswith("auto: ")
