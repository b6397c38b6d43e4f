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
