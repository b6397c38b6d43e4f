"""Peak memory of one min-max training step as a function of the erasing depth u.

The recursion back-propagates each step's localizer loss at once (Algorithm 1, line 12), so peak
memory should not grow with u. Each measurement runs in a fresh subprocess and reports the growth
of the peak resident set size (``ru_maxrss``) during one training step (forward + backward).
For contrast, ``--naive`` also measures a reference that keeps all u graphs and back-propagates
once: its peak grows with u, which shows the measurement can see the difference.

    python benchmarks/erasing_memory.py [--backbone resnet18] [--size 128] [--batch 8]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _naive_step(model, images, labels):
    """Reference: the same recursion, but every step's graph is kept until one final backward."""
    import torch
    import torch.nn.functional as F

    from wslbench.methods.minmax import negative_loss, positive_loss, trust_step

    x, m_acc = images, torch.zeros(images.shape[0], *images.shape[-2:])
    active, loss0, total = torch.ones(images.shape[0]), None, 0.0
    for t in range(model.erase_depth):
        if active.sum() == 0:
            break
        scores, _, cont = model.segment(x)
        per = F.cross_entropy(scores, labels, reduction="none")
        total = total + per.mean()
        loss0 = per.detach() if loss0 is None else loss0
        trust, active = trust_step(t, scores.detach().softmax(1), labels, per.detach(), loss0, active,
                                   model.erase_slope, model.trust_rule)
        m_acc = torch.maximum(m_acc, trust.view(-1, 1, 1) * model.mask(cont))
        keep = (trust != 0).float().view(-1, 1, 1, 1)
        x = x * (1 - m_acc.unsqueeze(1)) * keep + x * (1 - keep)
    m = m_acc.unsqueeze(1)
    total = total + positive_loss(model.classify(images * m), labels) + negative_loss(model.classify(images * (1 - m)))
    total.backward()
    return t + 1 if model.erase_depth else 0


def child(args) -> None:
    import torch

    from wslbench.methods.minmax import MinMax

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MinMax(2, backbone=args.backbone, pretrained=False, output_stride=args.output_stride,
                   dropout=0.0, erase_depth=args.depth, erase_start_epoch=0)
    images = torch.randn(args.batch, 3, args.size, args.size)
    with torch.no_grad():  # labels = the localizer's own prediction: every sample stays trusted
        labels = model.segment(images)[0].argmax(1)
    before = _maxrss_mb()
    if args.naive:
        steps = _naive_step(model, images, labels)
    else:
        out = model.training_step({"image": images, "label": labels})
        out["loss"].backward()
        steps = int(out["erase_steps"].item())
    print(json.dumps({"depth": args.depth, "naive": args.naive, "steps": steps, "peak_growth_mb": _maxrss_mb() - before}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--output-stride", type=int, default=None)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--depths", default="0,1,2,4,8")
    p.add_argument("--naive", action="store_true", help="also measure the keep-all-graphs reference")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--depth", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    base = [sys.executable, __file__, "--child", "--backbone", args.backbone, "--size", str(args.size),
            "--batch", str(args.batch), "--threads", str(args.threads)]
    if args.output_stride:
        base += ["--output-stride", str(args.output_stride)]
    rows = []
    for naive in ([False, True] if args.naive else [False]):
        for d in [int(v) for v in args.depths.split(",")]:
            if naive and d == 0:
                continue
            out = subprocess.run(base + ["--depth", str(d)] + (["--naive"] if naive else []),
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    ref = next(r["peak_growth_mb"] for r in rows if r["depth"] == min(int(v) for v in args.depths.split(",")) and not r["naive"])
    print(f"{'mode':<10}{'u':>4}{'steps':>7}{'peak MB':>10}{'ratio':>8}")
    for r in rows:
        ratio = r["peak_growth_mb"] / ref if ref > 0 else math.nan
        print(f"{'naive' if r['naive'] else 'stepwise':<10}{r['depth']:>4}{r['steps']:>7}{r['peak_growth_mb']:>10.1f}{ratio:>8.2f}")


if __name__ == "__main__":
    main()
