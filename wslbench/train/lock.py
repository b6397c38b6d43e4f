"""One run directory, one writer: a lock file created atomically (O_EXCL) holding host and pid.
A lock left by a dead process on this host is taken over; a live one refuses the second run."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from wslbench.errors import WslbenchError

LOCK = "run.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK
        self.held = False

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = self._holder()
                if other is None:  # being written by a run that starts now, or damaged: never taken over
                    raise WslbenchError(
                        f"{self.path} does not name the run that holds {self.path.parent} (it should hold "
                        "{\"host\": ..., \"pid\": ...}); another run may be starting there. If no run uses the "
                        "folder, delete the lock file") from None
                stale = other["host"] == me["host"] and not _alive(other["pid"])
                if not stale:
                    raise WslbenchError(
                        f"{self.path.parent} is in use by another run (pid {other.get('pid', '?')} on "
                        f"{other.get('host', '?')}); wait for it, or delete {self.path} if that process is gone"
                    ) from None
                self.path.unlink(missing_ok=True)  # the owner died without cleaning up
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise WslbenchError(f"could not lock {self.path}")

    def _holder(self) -> dict | None:
        """The lock's {host, pid}, or None when the file is not such a record."""
        try:
            other = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(other, dict) or not isinstance(other.get("host"), str) \
                or type(other.get("pid")) is not int or other["pid"] <= 0:
            return None
        return other

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
