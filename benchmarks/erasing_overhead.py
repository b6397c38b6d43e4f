"""Time overhead of recursive erasing: training-step time with u = 4 (the paper's depth) over
u = 0, and the mean number of erasing steps actually executed.

The paper's figure (Table 5, GlaS, one V100, 400 epochs): 90 min with erasing / 49 min without
= 1.84x. Two label settings bracket the executed steps: ``random`` labels (a random-init
localizer is often wrong, so the recursion stops early) and ``trusted`` labels (the localizer's
own prediction, so every sample stays trusted and all u steps run).

    python benchmarks/erasing_overhead.py [--backbone test_resnet] [--size 128] [--batch 16] [--reps 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from wslbench.methods.minmax import MinMax  # noqa: E402


def time_steps(model: MinMax, images, labels, reps: int, warmup: int = 1) -> tuple[float, float]:
    """Median seconds of one full step (zero_grad, training_step, backward) and mean executed steps."""
    times, steps = [], []
    for i in range(warmup + reps):
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        out = model.training_step({"image": images, "label": labels})
        out["loss"].backward()
        dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt)
            steps.append(float(out["erase_steps"]))
    return statistics.median(times), sum(steps) / len(steps)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="test_resnet")
    p.add_argument("--output-stride", type=int, default=16)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--classes", type=int, default=2)
    p.add_argument("--depth", type=int, default=4, help="erasing depth u (paper/code: 4)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MinMax(args.classes, backbone=args.backbone, pretrained=False, output_stride=args.output_stride,
                   dropout=0.75, erase_depth=0, erase_start_epoch=0)
    images = torch.randn(args.batch, 3, args.size, args.size)
    with torch.no_grad():
        model.eval()
        own = model.segment(images)[0].argmax(1)
        model.train()
    settings = {"random": torch.randint(0, args.classes, (args.batch,), generator=torch.Generator().manual_seed(1)),
                "trusted": own}
    print(f"backbone={args.backbone} size={args.size} batch={args.batch} u={args.depth} reps={args.reps}")
    for name, labels in settings.items():
        model.erase_depth = 0
        t0, _ = time_steps(model, images, labels, args.reps)
        model.erase_depth = args.depth
        tu, steps = time_steps(model, images, labels, args.reps)
        print(f"labels={name:<8} step u=0: {t0 * 1e3:8.1f} ms  u={args.depth}: {tu * 1e3:8.1f} ms  "
              f"overhead ratio: {tu / t0:5.2f}x  mean executed erasing steps: {steps:.2f}  (paper, GlaS: 1.84x)")


if __name__ == "__main__":
    main()
