"""One seed drives python, numpy, torch and every data-loader worker.

Each epoch re-seeds from (seed, epoch), so the data order, augmentations and dropout of epoch
e do not depend on what happened before it: a run resumed at epoch e replays exactly what an
uninterrupted run would have done.
"""
from __future__ import annotations

import os
import random

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
    """python, numpy and torch (CPU and CUDA) generator states, for an interrupt checkpoint."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def worker_init_fn(worker_id: int) -> None:
    """DataLoader gives each worker torch seed base_seed + worker_id; derive the others from it."""
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
