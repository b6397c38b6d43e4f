"""How many data-loader workers a run gets: ``data.num_workers: auto`` (the default) gives the
loader only the cores that the training leaves free.

Why: on a CPU the training step already keeps ``torch.get_num_threads()`` cores busy. A loader
worker beside them takes one of those cores, and a worker forked again every epoch also copies
the decoded image cache's page tables. On a 2-core machine at GlaS 480 px, 2 workers forked every
epoch made the trainer's step 2.1x slower than no worker (results/benchmarks.md, "Loader workers
at GlaS 480").
Where cores are free (a GPU run, a large CPU), the workers get them and stay alive across
epochs (``persistent_workers``), so nothing forks per epoch.

The worker count never changes a run's numbers: every sample's augmentation is seeded from
(seed, epoch, index) (wslbench.data.base), and the epoch travels with each index
(:class:`EpochItems`), so a persistent worker never uses a stale epoch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

#: the most workers ``auto`` starts: past a handful the loader is no longer the bottleneck and
#: each worker holds its own copy of the augmentation buffers
MAX_AUTO_WORKERS = 8


@dataclass(frozen=True)
class WorkerPlan:
    """What the training loader runs with, and why (recorded in env.json)."""

    num_workers: int
    persistent: bool
    reason: str

    def env(self) -> dict:
        return {"num_workers": self.num_workers, "persistent_workers": self.persistent,
                "num_workers_reason": self.reason}


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a SLURM or taskset allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def plan_workers(setting, device_type: str, training_threads: int, persistent: bool = True,
                 cores: int | None = None, processes_per_node: int = 1) -> WorkerPlan:
    """The loader's worker count for ``data.num_workers`` = ``setting`` (an int, or "auto").

    ``auto``: the cores of this process (the machine's usable cores shared by the
    ``processes_per_node`` processes torchrun started on it) minus the cores the training keeps
    busy: ``training_threads`` on a CPU, one on a GPU (the thread that drives it). No core free
    means no workers: the main process loads the data between steps. ``persistent`` keeps the
    workers alive across epochs (it only matters when there are workers).
    """
    if setting != "auto":
        n = int(setting)
        return WorkerPlan(n, persistent and n > 0, f"data.num_workers={n} set in the config")
    cores = usable_cores() if cores is None else int(cores)
    mine = max(cores // max(int(processes_per_node), 1), 1)
    busy = int(training_threads) if device_type == "cpu" else 1
    free = mine - busy
    share = f"{cores} usable cores" + (f" / {processes_per_node} processes = {mine}" if processes_per_node > 1 else "")
    what = f"{busy} training thread{'s' if busy != 1 else ''}" if device_type == "cpu" else "1 core driving the GPU"
    if free <= 0:
        return WorkerPlan(0, False, f"auto: {share}, {what}: no core free, so no workers "
                                    "(a worker would share a core with the training)")
    n = min(free, MAX_AUTO_WORKERS)
    capped = f" (at most {MAX_AUTO_WORKERS})" if free > MAX_AUTO_WORKERS else ""
    return WorkerPlan(n, persistent, f"auto: {share}, {what}: {free} free, {n} workers{capped}")


class EpochItems:
    """The training set as the loader sees it: items are ``(epoch, index)`` pairs (what
    :class:`wslbench.train.sampler.ResumableSampler` yields), so a worker that stays alive
    across epochs seeds each sample's augmentation with the epoch the sampler drew it for,
    not with the epoch the worker was started in."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed = dataset, int(seed)
        self._epoch = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        if epoch != self._epoch:
            self.dataset.set_epoch(epoch, self.seed)
            self._epoch = epoch
        return self.dataset[index]


__all__ = ["WorkerPlan", "plan_workers", "usable_cores", "EpochItems", "MAX_AUTO_WORKERS"]
