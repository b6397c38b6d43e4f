"""Compare two sets of finished runs cell by cell (e.g. fp32 against bf16): per method,
each seed's classification error, F1+, F1- and PxAP in both sets, the difference, and the
seed-to-seed spread (max - min over seeds) of the first set, to read the difference against.

    python benchmarks/compare_runs.py results/records/cpu_scratch/synthetic /tmp/bf16/runs/cpu_bf16/synthetic
"""
from __future__ import annotations

import sys

from wslbench.errors import WslbenchError
from wslbench.tables import collect_runs

FIELDS = {"cls_error": "error", "f1_pos": "F1+", "f1_neg": "F1-", "pxap": "PxAP"}
SCALE = {"cls_error": 1}  # eval.json's error is already in percent; the Dice scores and PxAP are fractions


def load(root: str):
    """(data set, method, seed) -> the FIELDS in points, from the finished runs under ``root``
    (found at any depth, as `wslbench tables` finds them)."""
    try:
        runs = collect_runs(root)
    except WslbenchError as exc:
        sys.exit(f"error: {exc}")
    table = runs.set_index(["dataset", "variant", "seed"])[list(FIELDS)].rename_axis(["dataset", "method", "seed"])
    return table.astype(float).mul([SCALE.get(k, 100) for k in FIELDS]).rename(columns=FIELDS)


def main(a: str, b: str) -> None:
    ref, other = load(a), load(b)
    both = ref.add_suffix(" A").join(other.add_suffix(" B"), how="inner")
    if both.empty:
        sys.exit("error: the two sets share no (method, seed) cell")
    lines = ["| method | seed | " + " | ".join(f"{n} A / B (diff)" for n in FIELDS.values()) + " |",
             "|---|---|" + "---|" * len(FIELDS)]
    for (_, method, seed), r in both.iterrows():
        cells = [f"{r[n + ' A']:.2f} / {r[n + ' B']:.2f} ({r[n + ' B'] - r[n + ' A']:+.2f})" for n in FIELDS.values()]
        lines.append(f"| {method} | {seed} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    print("\nper method: mean |B - A| over seeds, against A's seed spread (max - min over its seeds)\n")
    print("| method | " + " | ".join(f"{n}: |diff| / spread" for n in FIELDS.values()) + " |")
    print("|---|" + "---|" * len(FIELDS))
    for (dataset, method), grp in both.groupby(level=["dataset", "method"]):
        seeds = ref.loc[(dataset, method)]
        spread = seeds.max() - seeds.min()
        cells = [f"{(grp[n + ' B'] - grp[n + ' A']).abs().mean():.2f} / {spread[n]:.2f}" for n in FIELDS.values()]
        print(f"| {method} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
