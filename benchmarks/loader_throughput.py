"""Data-loader throughput on the real GlaS train split with the training transforms
(480x480 patches, flips, rotations, colour jitter), images/s: decoded-image cache in the parent
process (shared by forked workers), decoded arrays cached on disk (``cache: disk``, meant for
CUB-sized sets), and decoding every file on every access.

    python benchmarks/loader_throughput.py [--data-root ../shared/data/glas] [--workers 2] [--epochs 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time

from torch.utils.data import DataLoader

from wslbench.config import dataset_options, resolve
from wslbench.registry import create_dataset


def throughput(cache: str | None, root: str, workers: int, epochs: int, batch: int, cache_dir=None) -> float:
    cfg = resolve("cam-avg", "glas")
    kwargs = dataset_options(cfg.data, drop=("cache",))
    ds = create_dataset("glas", split="train", root=root, cache=cache, cache_dir=cache_dir, **kwargs)
    ds.set_epoch(0, 0)
    ds.preload()  # no-op without the memory cache
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers)
    t0, n = time.perf_counter(), 0
    for _ in range(epochs):
        for b in loader:
            n += b["image"].shape[0]
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default="../shared/data/glas")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args()
    cached = throughput("memory", args.data_root, args.workers, args.epochs, args.batch)
    uncached = throughput(None, args.data_root, args.workers, args.epochs, args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        throughput("disk", args.data_root, args.workers, 1, args.batch, tmp)  # fill the cache
        disk = throughput("disk", args.data_root, args.workers, args.epochs, args.batch, tmp)
    print(f"GlaS train, {args.workers} workers, batch {args.batch}, {args.epochs} epochs: "
          f"memory cache {cached:.1f} img/s, disk cache {disk:.1f} img/s, uncached {uncached:.1f} img/s; "
          f"ratios memory/uncached {cached / uncached:.2f}x, disk/uncached {disk / uncached:.2f}x")


if __name__ == "__main__":
    main()
