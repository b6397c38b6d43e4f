"""Compare two sets of finished runs cell by cell (e.g. fp32 against bf16, issue 19): per method,
each seed's classification error, F1+, F1- and PxAP in both sets, the difference, and the
seed-to-seed spread (max - min over seeds) of the first set, to read the difference against.

    python benchmarks/compare_runs.py results/records/cpu_scratch/synthetic /tmp/bf16/runs/cpu_bf16/synthetic
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

FIELDS = {"cls_error": "error", "f1_pos": "F1+", "f1_neg": "F1-", "pxap": "PxAP"}
SCALE = {"cls_error": 1}  # eval.json's error is already in percent; the Dice scores and PxAP are fractions


def load(root: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(root.glob("*/seed*/eval.json")):
        d = json.loads(path.read_text())
        rows.append({"method": path.parent.parent.name, "seed": int(path.parent.name[4:]),
                     **{name: SCALE.get(key, 100) * d[key] for key, name in FIELDS.items() if d.get(key) is not None}})
    if not rows:
        sys.exit(f"error: no finished run (*/seed*/eval.json) under {root}")
    return pd.DataFrame(rows).set_index(["method", "seed"])


def main(a: str, b: str) -> None:
    ref, other = load(Path(a)), load(Path(b))
    both = ref.add_suffix(" A").join(other.add_suffix(" B"), how="inner")
    if both.empty:
        sys.exit("error: the two sets share no (method, seed) cell")
    lines = ["| method | seed | " + " | ".join(f"{n} A / B (diff)" for n in FIELDS.values()) + " |",
             "|---|---|" + "---|" * len(FIELDS)]
    for (method, seed), r in both.iterrows():
        cells = [f"{r[n + ' A']:.2f} / {r[n + ' B']:.2f} ({r[n + ' B'] - r[n + ' A']:+.2f})" for n in FIELDS.values()]
        lines.append(f"| {method} | {seed} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    print("\nper method: mean |B - A| over seeds, against A's seed spread (max - min over its seeds)\n")
    print("| method | " + " | ".join(f"{n}: |diff| / spread" for n in FIELDS.values()) + " |")
    print("|---|" + "---|" * len(FIELDS))
    for method, grp in both.groupby(level="method"):
        spread = ref.loc[method].max() - ref.loc[method].min()
        cells = [f"{(grp[n + ' B'] - grp[n + ' A']).abs().mean():.2f} / {spread[n]:.2f}" for n in FIELDS.values()]
        print(f"| {method} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
