"""One seed drives python, numpy, torch and every data-loader worker.

Each epoch re-seeds from (seed, epoch), so the data order, augmentations and dropout of epoch
e do not depend on what happened before it: a run resumed at epoch e replays exactly what an
uninterrupted run would have done.
"""
from __future__ import annotations

import os
import random
import signal

import numpy as np
import torch


def derive_seed(seed: int, *keys: int) -> int:
    """A 31-bit seed from a base seed and integer keys (stable across processes and versions)."""
    ss = np.random.SeedSequence([seed, *keys])
    return int(ss.generate_state(1, dtype=np.uint32)[0] & 0x7FFFFFFF)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """python, numpy and torch (CPU and CUDA) generator states, for an interrupt checkpoint.

    Only tensors and plain numbers/lists, so the checkpoint loads with ``torch.load(weights_only=True)``
    (the pickled numpy state would need numpy globals); the round trip is exact."""
    state = {
        "python": plain_python_state(random.getstate()),
        "numpy": plain_numpy_state(np.random.get_state(legacy=True)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def plain_python_state(state: tuple) -> dict:
    """``random.getstate()`` -> {version, Mersenne Twister words, cached gauss} (all plain)."""
    version, words, gauss_next = state
    return {"version": int(version), "state": [int(w) for w in words], "gauss_next": gauss_next}


def plain_numpy_state(state: tuple) -> dict:
    """``np.random.get_state(legacy=True)`` -> plain values; the 624 uint32 key words as ints."""
    name, keys, pos, has_gauss, cached_gaussian = state
    return {"bit_generator": str(name), "keys": [int(k) for k in np.asarray(keys, dtype=np.uint32)],
            "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)}


def plain_rng_state(state: dict) -> dict:
    """An RNG state of either form (checkpoints of earlier versions pickled the python tuple and
    numpy's tuple with its uint32 array) in the plain form :func:`rng_state` writes."""
    out = dict(state)
    if not isinstance(out["python"], dict):
        out["python"] = plain_python_state(tuple(out["python"]))
    if not isinstance(out["numpy"], dict):
        out["numpy"] = plain_numpy_state(tuple(out["numpy"]))
    return out


def set_rng_state(state: dict) -> None:
    py, nps = state["python"], state["numpy"]
    random.setstate((int(py["version"]), tuple(int(w) for w in py["state"]), py["gauss_next"]))
    np.random.set_state((nps["bit_generator"], np.array(nps["keys"], dtype=np.uint32), int(nps["pos"]),
                         int(nps["has_gauss"]), float(nps["cached_gaussian"])))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def worker_init_fn(worker_id: int) -> None:
    """DataLoader gives each worker torch seed base_seed + worker_id; derive the others from it.

    A worker also ignores SIGTERM: a signal sent to the whole process group (``kill -- -PGID``,
    SLURM at a time limit or preemption) would otherwise kill the workers first, and the main
    process would die on "DataLoader worker is killed" instead of finishing its step and saving
    a checkpoint. The main process still stops its workers (end-of-data sentinel; they also exit
    when their parent is gone)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


def set_deterministic(enabled: bool) -> None:
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
