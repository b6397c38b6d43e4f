"""Training throughput on the device at hand: images/s of full training steps (forward, the
method's own backward passes, SGD step) for min-max (erasing on and off) and a CAM baseline,
in fp32 and in bf16 autocast + channels_last (CUDA only), plus the localizer-pass cost and an
estimate of the 400-epoch GlaS min-max protocol. Random tensors: this measures the model, not
the loader (see loader_throughput.py).

GPU (the paper's setting):
    python benchmarks/train_throughput.py --device cuda
CPU smoke run (tiny settings; figures are CPU figures, not the targets):
    python benchmarks/train_throughput.py --device cpu --minmax-backbone test_resnet --cam-backbone test_resnet \
        --size 128 --batch 4 --steps 2
Targets (results/benchmarks.md): bf16 >= 2x fp32; erasing overhead u=4 vs u=0 beside the paper's
1.84x; one executed localizer pass within 1.1x of a plain trunk forward+backward; 400-epoch GlaS
min-max under 10 min on one H100.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from wslbench.registry import create_method  # noqa: E402

GLAS_TRAIN_IMAGES = 68  # effective train split
GLAS_EPOCHS = 400


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training(method, images, labels, steps, warmup, device, bf16, channels_last):
    """Median seconds per training step and the mean executed erasing steps."""
    opt = torch.optim.SGD(method.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
    method.train()
    if channels_last:
        method.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    times, erase = [], []
    for i in range(warmup + steps):
        sync(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with ctx():
            out = method({"image": images, "label": labels, "mask": (images[:, 0] > 0).to(torch.uint8)})
        out["loss"].backward()
        opt.step()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            erase.append(float(out.get("erase_steps", torch.zeros(())).item()))
    return statistics.median(times), sum(erase) / len(erase)


def time_trunk(method, images, steps, warmup, device):
    """Median seconds of one plain forward + backward of the min-max localizer (trunk + head)."""
    times = []
    for i in range(warmup + steps):
        sync(device)
        t0 = time.perf_counter()
        scores, _, _ = method.segment(images)
        scores.float().sum().backward()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--minmax-backbone", default="resnet101")
    p.add_argument("--cam-backbone", default="resnet18")
    p.add_argument("--size", type=int, default=480, help="training patch size (paper: 480)")
    p.add_argument("--batch", type=int, default=8, help="paper: 8")
    p.add_argument("--classes", type=int, default=2)
    p.add_argument("--depth", type=int, default=4, help="erasing depth u (paper: 4)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    images = torch.randn(args.batch, 3, args.size, args.size, device=device)
    labels = torch.randint(0, args.classes, (args.batch,), device=device)
    precisions = [("fp32", False, False)] + ([("bf16+channels_last", True, True)] if device.type == "cuda" else [])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; patch {args.size}x{args.size}, batch {args.batch}, {args.steps} timed steps")
    results = {}
    for label, bf16, cl in precisions:
        for method_name, kwargs in (
            ("cam-avg", dict(backbone=args.cam_backbone)),
            ("minmax u=0", dict(backbone=args.minmax_backbone, erase_depth=0, erase_start_epoch=0)),
            (f"minmax u={args.depth}", dict(backbone=args.minmax_backbone, erase_depth=args.depth, erase_start_epoch=0)),
        ):
            torch.manual_seed(0)
            method = create_method(method_name.split()[0], num_classes=args.classes, pretrained=False, **kwargs).to(device)
            t, erase = time_training(method, images, labels, args.steps, args.warmup, device, bf16, cl)
            results[(label, method_name)] = (t, erase)
            print(f"  {label:<20} {method_name:<12} {args.batch / t:8.1f} img/s  ({t * 1e3:7.1f} ms/step"
                  + (f", {erase:.2f} erasing steps executed)" if method_name.startswith("minmax") else ")"))
    print("ratios (measured in this run):")
    for label, _, _ in precisions:
        t0, _ = results[(label, "minmax u=0")]
        tu, erase = results[(label, f"minmax u={args.depth}")]
        print(f"  {label}: erasing overhead u={args.depth} / u=0 = {tu / t0:.2f}x with {erase:.2f} executed steps "
              f"(paper, GlaS V100: 1.84x)")
        epoch_s = GLAS_TRAIN_IMAGES / args.batch * tu
        print(f"  {label}: 400-epoch GlaS min-max training estimate = {GLAS_EPOCHS * epoch_s / 60:.1f} min "
              "(training steps only; target < 10 min on one H100)")
    if len(precisions) > 1:
        for m in ("cam-avg", "minmax u=0", f"minmax u={args.depth}"):
            speed = results[("fp32", m)][0] / results[("bf16+channels_last", m)][0]
            print(f"  bf16+channels_last / fp32 speed-up, {m}: {speed:.2f}x (target >= 2x)")
    torch.manual_seed(0)
    mm = create_method("minmax", num_classes=args.classes, pretrained=False, backbone=args.minmax_backbone,
                       erase_depth=args.depth, erase_start_epoch=0).to(device).train()
    trunk = time_trunk(mm, images, args.steps, args.warmup, device)
    t0, _ = results[("fp32", "minmax u=0")]
    tu, erase = results[("fp32", f"minmax u={args.depth}")]
    if erase > 0:
        per_pass = (tu - t0) / erase
        print(f"  fp32: one executed localizer pass = {per_pass * 1e3:.1f} ms vs plain localizer forward+backward "
              f"{trunk * 1e3:.1f} ms: {per_pass / trunk:.2f}x (target <= 1.1x)")


if __name__ == "__main__":
    main()
