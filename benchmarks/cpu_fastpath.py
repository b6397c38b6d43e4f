"""CPU fast path: images/s of a training step and of evaluation (whole image, batch 1) in fp32,
channels_last, bf16 autocast and both, per trunk, with the ratios to fp32; optionally the split
of the two cores between loader workers and training threads (``--workers``).

The modes are interleaved (round 1: fp32, cl, bf16, both; round 2: ...) and each figure is the
median over rounds, so a machine whose load changes during the run hurts every mode alike.

    python benchmarks/cpu_fastpath.py                                   # lite0 + resnet18, 256 px, batch 8
    python benchmarks/cpu_fastpath.py --backbones test_resnet test_efficientnet --size 64
    python benchmarks/cpu_fastpath.py --backbones --workers              # loader workers 0/1/2 only

Random tensors for the model figures (this measures the model, not the loader); ``--workers``
runs the trainer's own epoch loop on the synthetic set (in-memory data).
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from wslbench.evaluate import autocast_for  # noqa: E402
from wslbench.registry import create_method  # noqa: E402
from wslbench.train.fastpath import cpu_bf16_support  # noqa: E402

MODES = {"fp32": (False, False), "channels_last": (True, False), "bf16": (False, True), "both": (True, True)}


def train_step(method, opt, images, labels, bf16):
    opt.zero_grad(set_to_none=True)
    with autocast_for(images.device, bf16):
        loss = method({"image": images, "label": labels})["loss"]
    loss.backward()
    opt.step()


def eval_step(method, image, bf16):
    with torch.no_grad(), autocast_for(image.device, bf16):
        method.predict(image)


def bench_backbone(name, args):
    """{mode: (train img/s, eval img/s)} for one trunk, modes interleaved over rounds."""
    torch.manual_seed(0)
    base = create_method(args.method, num_classes=2, backbone=name, pretrained=False)
    images = torch.randn(args.batch, 3, args.size, args.size)
    labels = torch.randint(0, 2, (args.batch,))
    eval_image = torch.randn(1, 3, args.eval_size, args.eval_size)
    setups = {}
    for mode, (cl, bf16) in MODES.items():
        m = copy.deepcopy(base)
        x, e = images, eval_image
        if cl:
            m.to(memory_format=torch.channels_last)
            x, e = x.contiguous(memory_format=torch.channels_last), e.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9)
        m.train()
        for _ in range(args.warmup):
            train_step(m, opt, x, labels, bf16)
        m.eval()
        eval_step(m, e, bf16)
        setups[mode] = (m, opt, x, e, bf16)
    times = {mode: ([], []) for mode in MODES}
    for _ in range(args.rounds):
        for mode, (m, opt, x, e, bf16) in setups.items():
            m.train()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                train_step(m, opt, x, labels, bf16)
            times[mode][0].append((time.perf_counter() - t0) / args.steps)
            m.eval()
            t0 = time.perf_counter()
            for _ in range(args.eval_steps):
                eval_step(m, e, bf16)
            times[mode][1].append((time.perf_counter() - t0) / args.eval_steps)
    return {mode: (args.batch / statistics.median(t), 1 / statistics.median(v)) for mode, (t, v) in times.items()}


def bench_workers(args):
    """Images/s of the trainer's epoch loop (synthetic set, in memory) for each num_workers."""
    from wslbench.config import resolve
    from wslbench.train import Trainer

    trainers = {}
    tmp = tempfile.mkdtemp(prefix="cpu_fastpath_")
    for nw in args.num_workers:
        cfg = resolve("cam-avg", "synthetic", overrides=[
            f"data.num_workers={nw}", "train.progress=false", f"model.backbone={args.workers_backbone}",
            f"train.max_steps_per_epoch={args.workers_steps}", f"data.n_train={args.workers_steps * 32}"])
        trainers[nw] = Trainer(cfg, f"{tmp}/nw{nw}")
    rates = {nw: [] for nw in trainers}
    for r in range(args.rounds):
        for nw, tr in trainers.items():
            tr._start_epoch(r)
            rates[nw].append(tr._train_epoch(r)["images_per_s"])
            tr._bar.close()
    return {nw: statistics.median(v) for nw, v in rates.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbones", nargs="*", default=["tf_efficientnet_lite0", "resnet18"])
    p.add_argument("--method", default="cam-avg")
    p.add_argument("--size", type=int, default=256, help="training crop (px)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--eval-size", type=int, default=512, help="whole test image (px), batch 1")
    p.add_argument("--steps", type=int, default=2, help="training steps per mode per round")
    p.add_argument("--eval-steps", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--workers", action="store_true", help="also measure data.num_workers (trainer loop, synthetic)")
    p.add_argument("--num-workers", type=int, nargs="*", default=[0, 1, 2])
    p.add_argument("--workers-backbone", default="tf_efficientnet_lite0")
    p.add_argument("--workers-steps", type=int, default=4)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    native, why = cpu_bf16_support()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, capability "
          f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {native} ({why})")
    print(f"{args.method}, training {args.batch}x{args.size}px, evaluation 1x{args.eval_size}px, "
          f"median of {args.rounds} interleaved rounds")
    for name in args.backbones:
        res = bench_backbone(name, args)
        t0, e0 = res["fp32"]
        print(f"\n{name}:  {'mode':<14}{'train img/s':>12}{'ratio':>8}{'eval img/s':>12}{'ratio':>8}")
        for mode, (t, e) in res.items():
            print(f"{'':<{len(name) + 3}}{mode:<14}{t:>12.2f}{t / t0:>7.2f}x{e:>12.2f}{e / e0:>7.2f}x")
    if args.workers:
        res = bench_workers(args)
        print(f"\nloader workers (trainer loop, synthetic 128 px, batch 32, {args.workers_backbone}, "
              f"default amp/channels_last): " + ", ".join(f"num_workers={nw}: {v:.2f} img/s" for nw, v in res.items()))


if __name__ == "__main__":
    main()
