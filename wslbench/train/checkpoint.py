"""Checkpoints: written atomically (temp file + rename), read back with clear errors."""
from __future__ import annotations

from pathlib import Path

import torch

from wslbench.errors import WslbenchError
from wslbench.io import atomic_save

LAST = "last.pt"
BEST = "best.pt"


def save_checkpoint(path: str | Path, state: dict) -> None:
    atomic_save(path, lambda buf: torch.save(state, buf))


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise WslbenchError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise WslbenchError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc
