"""Loader workers at the real setting: seconds per training step of the trainer's own epoch loop
on real GlaS at 480 px with the pretrained lite0 trunk (the glas_lite0 sweep's settings), for
data.num_workers 0, 1, 2 and auto, with and without persistent workers, next to a bare step of
the same model on random tensors of the same size. Printed as ratios to the bare step (higher is
better, 1.0 = the loader and the loop cost nothing).

The settings are interleaved (round 1: every setting one epoch; round 2: ...) so that a machine
whose load changes hurts all of them alike; each figure is the mean over rounds of an epoch's
seconds per step, the first epoch (worker start-up) included, as in a real run.

Then where the rest of an epoch's time goes with the default (auto) setting: producing the batches
alone (decode cache, reflect padding, crop, flips, rotation, colour jitter, collation), the
per-epoch validation, and the two checkpoint writes.

    HF_HUB_OFFLINE=1 python benchmarks/loader_workers.py                       # real GlaS, about 10 min on 2 cores
    HF_HUB_OFFLINE=1 python benchmarks/loader_workers.py --dataset synthetic --quick   # a smoke run, 1 min
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: (label, data.num_workers, data.persistent_workers)
SETTINGS = [("0", 0, False), ("1", 1, False), ("1 persistent", 1, True), ("2", 2, False), ("2 persistent", 2, True),
            ("auto", "auto", False), ("auto persistent (default)", "auto", True)]


def sweep_overrides(path: Path) -> list[str]:
    """The grid-wide settings of a sweep file (its ``set:`` list, ``extends:`` followed)."""
    from wslbench.sweep import load_spec

    return [s for s in load_spec(path).get("set") or [] if not s.startswith("data.num_workers")]


def build(args, label, workers, persistent, tmp):
    from wslbench.config import resolve
    from wslbench.train import Trainer

    sets = sweep_overrides(REPO / args.sweep) if args.dataset == "glas" else []
    sets += [f"data.num_workers={workers}", f"data.persistent_workers={str(persistent).lower()}",
             "train.progress=false", f"data.root={args.data_root}" if args.dataset == "glas" else "data.n_train=64"]
    if args.dataset == "synthetic":
        sets += ["model.backbone=test_resnet"]
    cfg = resolve(args.method, args.dataset, shared_overrides=sets)
    return Trainer(cfg, Path(tmp) / label.replace(" ", "_"))


def bare_steps(trainer, steps: int) -> float:
    """Seconds per step of the trainer's model on random tensors (same batch, size, layout, fp32)."""
    method = copy.deepcopy(trainer.method)
    method.train()
    opt = torch.optim.SGD(method.parameters(), lr=1e-6, momentum=0.9)
    b = trainer.local_batch
    size = int(trainer.cfg.data.get("patch_size") or trainer.cfg.data.get("image_size"))
    x = torch.randn(b, 3, size, size)
    if trainer.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, trainer.train_set.num_classes, (b,))
    batch = {"image": x, "label": y, "mask": torch.zeros(b, size, size, dtype=torch.uint8)}

    def step():
        opt.zero_grad(set_to_none=True)
        method(batch)["loss"].backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def epoch_seconds_per_step(trainer, epoch: int) -> float:
    trainer._start_epoch(epoch)
    rec = trainer._train_epoch(epoch)
    trainer._bar.close()
    return rec["epoch_time_s"] / len(trainer.train_loader)


def where_the_rest_goes(trainer, epoch: int) -> dict:
    """Seconds of one epoch's parts besides the training steps (default setting)."""
    from wslbench.train.checkpoint import save_checkpoint

    out = {}
    trainer._start_epoch(epoch)
    t0 = time.perf_counter()
    n = sum(1 for _ in trainer.train_loader)
    out["batches only (no model), per step"] = (time.perf_counter() - t0) / max(n, 1)
    t0 = time.perf_counter()
    trainer._validate()
    out["validation, per epoch"] = time.perf_counter() - t0
    state = trainer._state(epoch + 1, None, 0, 0.0)
    t0 = time.perf_counter()
    save_checkpoint(trainer.run_dir / "last.pt", state)
    save_checkpoint(trainer.run_dir / "best.pt", {"epoch": epoch + 1, "method": state["method"]})
    out["checkpoints last.pt + best.pt, per epoch"] = time.perf_counter() - t0
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="glas", choices=["glas", "synthetic"])
    p.add_argument("--data-root", default=os.environ.get("WSLBENCH_GLAS", str(REPO.parent / "shared" / "data" / "glas")))
    p.add_argument("--sweep", default="experiments/glas_lite0.yaml", help="whose grid-wide settings to use (glas)")
    p.add_argument("--method", default="cam-avg")
    p.add_argument("--rounds", type=int, default=3, help="epochs per setting, interleaved")
    p.add_argument("--bare-steps", type=int, default=4, help="bare steps per round")
    p.add_argument("--quick", action="store_true", help="2 rounds, settings 0, 2 persistent and auto only")
    args = p.parse_args()
    settings = SETTINGS
    if args.quick:
        args.rounds = 2
        settings = [s for s in SETTINGS if s[0] in ("0", "2 persistent", "auto persistent (default)")]
    with tempfile.TemporaryDirectory(prefix="loader_workers_") as tmp:
        trainers = {label: build(args, label, w, pw, tmp) for label, w, pw in settings}
        default = trainers[settings[-1][0]]
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, capability "
              f"{torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores; {args.method} on {args.dataset}, "
              f"batch {default.local_batch}, {len(default.train_loader)} steps an epoch, {args.rounds} interleaved rounds")
        print(f"auto here: {default.workers.reason}")
        per_step = {label: [] for label in trainers}
        bare = []
        for r in range(args.rounds):
            bare.append(bare_steps(default, args.bare_steps))
            for label, tr in trainers.items():
                per_step[label].append(epoch_seconds_per_step(tr, r))
        b = statistics.mean(bare)
        print(f"\n{'data.num_workers':<28}{'s / step':>10}{'x bare':>9}   per round")
        print(f"{'bare step (random tensors)':<28}{b:>10.3f}{1.0:>8.2f}x   " + " ".join(f"{v:.2f}" for v in bare))
        for label, v in per_step.items():
            m = statistics.mean(v)
            print(f"{label:<28}{m:>10.3f}{b / m:>8.2f}x   " + " ".join(f"{x:.2f}" for x in v))
        for tr in trainers.values():
            tr._stop_workers()
        print("\nwhere the rest goes (default setting):")
        for k, v in where_the_rest_goes(default, args.rounds).items():
            print(f"  {k:<44}{v:>8.3f} s")


if __name__ == "__main__":
    main()
