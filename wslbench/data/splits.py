"""Seeded, deterministic train/validation splits, and the committed CSV records that pin them.

GlaS, CUB5 and CUB carve a validation set (20%, stratified by class) out of their official
training set; OxF uses its official validation set. The split is a pure function of the
official metadata (sorted ids, labels) and a seed, so every user derives the same split from
their own copy; ``experiments/splits/<dataset>.csv`` (id, label, split) records it. When that
file exists the loader checks that what it derives matches it, so a changed or partial copy of
the data is caught before training.

    python -m wslbench.data.splits glas --data-root ../shared/data/glas   # (re)writes the CSV
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import pandas as pd

from wslbench.errors import DataError

VAL_FRACTION = 0.2
SPLIT_SEED = 0


def stratified_split(ids: list[str], labels: list[int], val_fraction: float = VAL_FRACTION,
                     seed: int = SPLIT_SEED) -> dict[str, str]:
    """{id: "train" | "val"}: per class, round(val_fraction * n_c) ids drawn at random (numpy
    PCG64 seeded with ``seed``, classes in increasing order, ids sorted first) go to validation."""
    if len(ids) != len(labels):
        raise ValueError("ids and labels differ in length")
    rng = np.random.default_rng(seed)
    out = {}
    by_class: dict[int, list[str]] = {}
    for i, y in zip(ids, labels):
        by_class.setdefault(int(y), []).append(i)
    for y in sorted(by_class):
        members = sorted(by_class[y])
        n_val = int(round(val_fraction * len(members)))
        chosen = set(rng.permutation(len(members))[:n_val].tolist())
        for k, i in enumerate(members):
            out[i] = "val" if k in chosen else "train"
    return out


def splits_dir() -> Path:
    from wslbench.config import experiments_dir

    return experiments_dir() / "splits"


def split_table(rows: list[tuple[str, int, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["id", "label", "split"]).sort_values(["split", "id"], kind="stable").reset_index(drop=True)


def verify_against_record(name: str, table: pd.DataFrame, path: Path | None = None) -> None:
    """Raise DataError when the derived split differs from the committed record (if any)."""
    path = path or splits_dir() / f"{name}.csv"
    if not path.is_file():
        return
    recorded = pd.read_csv(path, dtype={"id": str, "label": int, "split": str})
    recorded = split_table(list(recorded.itertuples(index=False, name=None)))
    if recorded.equals(table):
        return
    merged = recorded.merge(table, on="id", how="outer", suffixes=("_recorded", "_found"), indicator=True)
    missing = merged[merged["_merge"] == "left_only"]["id"].tolist()
    extra = merged[merged["_merge"] == "right_only"]["id"].tolist()
    both = merged[merged["_merge"] == "both"]
    changed = both[(both["label_recorded"] != both["label_found"]) | (both["split_recorded"] != both["split_found"])]["id"].tolist()
    parts = []
    if missing:
        parts.append(f"{len(missing)} recorded images not found (e.g. {missing[:3]})")
    if extra:
        parts.append(f"{len(extra)} images not in the record (e.g. {extra[:3]})")
    if changed:
        parts.append(f"{len(changed)} images with another label or split (e.g. {changed[:3]})")
    raise DataError(
        f"{name}: the data under the root does not match the committed split record {path}: "
        + "; ".join(parts) + ". Check that the folder is a complete, unmodified copy of the official release."
    )


def write_record(name: str, table: pd.DataFrame, path: Path | None = None) -> Path:
    from wslbench.io import atomic_write_text

    path = path or splits_dir() / f"{name}.csv"
    buf = io.StringIO()
    table.to_csv(buf, index=False)
    atomic_write_text(path, buf.getvalue())
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write experiments/splits/<dataset>.csv from a copy of the data.")
    parser.add_argument("dataset")
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--out", default=None, help="CSV path (default: experiments/splits/<dataset>.csv)")
    args = parser.parse_args(argv)
    from wslbench.registry import dataset_entry

    cls = dataset_entry(args.dataset).obj
    table = cls.split_table(args.data_root)
    path = write_record(args.dataset, table, Path(args.out) if args.out else None)
    print(f"{path}: " + ", ".join(f"{k} {v}" for k, v in table["split"].value_counts().sort_index().items()))


if __name__ == "__main__":
    main()
