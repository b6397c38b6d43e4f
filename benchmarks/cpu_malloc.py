"""``train.keep_freed_memory``: seconds per step with glibc's default malloc and with freed blocks
kept for reuse, on the two CPU workloads of the GlaS comparison, with the ratio and peak memory.

- ``scorecam``: one Score-CAM batch, a no-grad lite0 forward of 16 images at 544x800 (a GlaS
  test image padded to 32; Score-CAM runs 80 of them an image);
- ``train``: one CAM-Avg training step on lite0, batch 8, 480 px patches (the sweep's).

Each mode runs in a fresh process (the malloc setting is process-wide and cannot be undone), the
modes interleaved over rounds; each figure is the median over rounds of the mean of ``--steps``
timed steps after one warm-up step. Random weights and inputs: this measures the allocator, and
the output sums are printed to show the two modes compute the same bits.

    python benchmarks/cpu_malloc.py                      # both workloads, 2 rounds
    python benchmarks/cpu_malloc.py --workloads train --rounds 3
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

STEP = """
import json, resource, sys, time, torch
from wslbench.train.fastpath import keep_freed_memory
setting, workload, steps = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
on, _ = keep_freed_memory(setting, torch.device("cpu"))
torch.manual_seed(0)
from wslbench.registry import create_method
method = create_method("cam-avg", num_classes=2, backbone="tf_efficientnet_lite0", pretrained=False)
method = method.to(memory_format=torch.channels_last)
if workload == "scorecam":
    method.eval()
    x = torch.rand(16, 3, 544, 800)
    def step():
        with torch.no_grad():
            return method.forward_logits(x).sum()
else:
    method.train()
    x = torch.rand(8, 3, 480, 480).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (8,))
    opt = torch.optim.SGD(method.parameters(), lr=1e-3)
    def step():
        opt.zero_grad(set_to_none=True)
        loss = method({"image": x, "label": y})["loss"]
        loss.backward()
        opt.step()
        return loss
step()  # warm-up
times, out = [], []
for _ in range(steps):
    t = time.perf_counter()
    out.append(float(step()))
    times.append(time.perf_counter() - t)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
print(json.dumps({"on": on, "s": sum(times) / steps, "peak_gib": peak, "out": out}))
"""


def measure(setting: bool, workload: str, steps: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", STEP, json.dumps(setting), workload, str(steps)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", default=["scorecam", "train"], choices=["scorecam", "train"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}; {args.rounds} rounds x {args.steps} steps")
    print(f"{'workload':<10} {'keep_freed_memory':<18} {'s/step':>8} {'speed-up':>9} {'peak GiB':>9}  outputs")
    for workload in args.workloads:
        runs = {False: [], True: []}
        for _ in range(args.rounds):
            for setting in (False, True):
                runs[setting].append(measure(setting, workload, args.steps))
        base = statistics.median(r["s"] for r in runs[False])
        for setting in (False, True):
            s = statistics.median(r["s"] for r in runs[setting])
            peak = max(r["peak_gib"] for r in runs[setting])
            outs = " ".join(f"{o:.6g}" for o in runs[setting][0]["out"])
            print(f"{workload:<10} {str(setting).lower():<18} {s:8.2f} {base / s:8.2f}x {peak:9.2f}  {outs}")
        same = runs[False][0]["out"] == runs[True][0]["out"]
        print(f"{workload:<10} outputs identical in both modes: {same}")


if __name__ == "__main__":
    main()
