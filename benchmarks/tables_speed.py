"""Time `wslbench tables` (collect + Tables 1-6 in LaTeX, Markdown and CSV) on 100 fabricated
run folders; the target is under 2 seconds.

    python benchmarks/tables_speed.py [--runs 100]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from wslbench.registry import list_methods
from wslbench.tables import write_tables


def fabricate(root: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    combos = [(d, m) for d in ("glas", "cub5", "cub", "oxf") for m in list_methods()]
    for k in range(n):
        ds, method = combos[k % len(combos)]
        run = root / ds / method / f"seed{k // len(combos)}"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(yaml.safe_dump({"method": method, "dataset": ds, "seed": k // len(combos),
                                                         "model": {"erase_depth": 4}}))
        ev = {"cls_error": None if method in ("all-ones", "unet") else float(rng.uniform(0, 40)),
              "f1_pos": float(rng.random()), "f1_neg": float(rng.random()), "crf_f1_pos": float(rng.random()),
              "crf_f1_neg": float(rng.random()), "train_time_s": float(rng.uniform(60, 6000)), "epochs_run": 10}
        (run / "eval.json").write_text(json.dumps(ev))
        (run / "status.json").write_text(json.dumps({"state": "finished"}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fabricate(root / "runs", args.runs)
        t0 = time.perf_counter()
        paths = write_tables(root / "runs", root / "tables", ("latex", "markdown", "csv"))
        elapsed = time.perf_counter() - t0
    print(f"{args.runs} runs -> {len(paths)} files in {elapsed:.3f} s "
          f"(target 2 s: {elapsed / 2:.2f}x of the budget)")


if __name__ == "__main__":
    main()
