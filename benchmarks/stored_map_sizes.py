"""Sizes of the maps run records store (maps-test.npz + maps-val.npz), per run, and for maps
stored lossily (8-bit PNG) what the encoding does to the scores: each such run is rescored from
its stored maps (in a temporary copy) and compared with the eval.json its evaluation wrote from
the float maps.

    python benchmarks/stored_map_sizes.py results/records/glas_lite0_e160
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from wslbench.rescore import rescore_run
from wslbench.runs import find_run_dirs
from wslbench.stored_maps import maps_file

SCORES = ("f1_pos", "f1_neg", "pxap")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root")
    args = p.parse_args()
    print(f"{'run':<48}{'encoding':>9}{'test KB':>9}{'val KB':>8}{'KB/image':>10}   lossy encoding: |score - eval.json|")
    for run_dir in find_run_dirs(args.root):
        test, val = maps_file(run_dir, "test"), maps_file(run_dir, "val")
        if not test.is_file():
            continue
        with np.load(test) as z:
            meta, n = json.loads(str(z["meta"])), len(z["ids"])
        t_kb, v_kb = test.stat().st_size / 1024, (val.stat().st_size / 1024 if val.is_file() else 0.0)
        effect = ""
        if meta["encoding"] != "float32":
            with tempfile.TemporaryDirectory() as tmp:
                copy = Path(tmp) / "run"
                shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("*.pt", "masks", "eval_cache"))
                got = rescore_run(copy).result
            ev = json.loads((run_dir / "eval.json").read_text())
            effect = "  ".join(f"{k} {abs(got[k] - ev[k]):.1e}" for k in SCORES)
        name = str(run_dir.relative_to(args.root))
        print(f"{name:<48}{meta['encoding']:>9}{t_kb:>9.1f}{v_kb:>8.1f}{t_kb / n:>10.2f}   {effect}")


if __name__ == "__main__":
    main()
