"""Atomic file writes: a reader (or a killed run) never sees a half-written file."""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import yaml


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone gives 0600


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_yaml(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False))


def atomic_save(path: str | Path, writer: Callable[[io.BytesIO], None]) -> None:
    """Atomic write of anything that serialises to a binary stream (torch.save, PIL, savefig)."""
    buf = io.BytesIO()
    writer(buf)
    atomic_write_bytes(path, buf.getvalue())


#: what every finished evaluation writes into eval.json; an eval.json without them is no result
SCORE_KEYS = ("f1_pos", "f1_neg")


def finished_result(run_dir: str | Path) -> dict | None:
    """The eval.json of a run folder whose status.json says ``finished``; None otherwise
    (never started, still running, interrupted, failed, or files unreadable)."""
    run_dir = Path(run_dir)
    try:
        status = json.loads((run_dir / "status.json").read_text())
        if not isinstance(status, dict) or status.get("state") != "finished":  # a list or a string: not a status
            return None
        result = json.loads((run_dir / "eval.json").read_text())
        # an eval.json without the scores every evaluation writes (``{}``) is no result either
        return result if isinstance(result, dict) and all(k in result for k in SCORE_KEYS) else None
    except (OSError, ValueError):
        return None


def append_jsonl(path: str | Path, record: dict) -> None:
    """Append one JSON line; a line is written with a single write call and flushed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            out.append(json.loads(line))
    return out
