"""Shared test setup: offline hub, small thread count, helpers to build tiny configs."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if "WSLBENCH_CACHE" not in os.environ:  # the data checks' cache: this test run's own, not the user's
    import tempfile

    os.environ["WSLBENCH_CACHE"] = tempfile.mkdtemp(prefix="wslbench-test-cache-")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parents[1]
GLAS_ROOT = Path(os.environ.get("WSLBENCH_GLAS", REPO.parent / "shared" / "data" / "glas"))

#: a synthetic setup small enough for a training test to take seconds
TINY = [
    "data.n_train=24",
    "data.n_val=12",
    "data.n_test=12",
    "data.image_size=64",
    "data.batch_size=8",
    "data.eval_batch_size=12",
    "train.progress=false",
]


def tiny_config(method: str = "cam-avg", epochs: int = 2, extra: list[str] = (), **cli):
    from wslbench.config import resolve

    return resolve(method, "synthetic", overrides=[*TINY, f"train.epochs={epochs}", *extra], cli=cli)


@pytest.fixture
def tiny():
    return tiny_config
