"""Which speed-ups a run gets on the device at hand: bf16 autocast and the channels_last memory
layout, on CUDA and on CPUs that have them, with the reason for each (recorded in env.json).

``train.amp`` and ``train.channels_last`` take ``auto`` (what was measured fastest where the
hardware supports it, see results/benchmarks.md), ``true`` (on, even where it is slow) or
``false``. The choice is resolved once per run so training, validation, min-max's erasing
passes and the test evaluation all run the same way.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from wslbench.errors import ConfigError

#: the values ``train.amp`` and ``train.channels_last`` accept
CHOICES = ("auto", True, False)

#: /proc/cpuinfo flags of native bf16 arithmetic (AVX512-BF16 dot products, AMX tiles). Without
#: them torch still runs bf16 on a CPU, but by converting to fp32 and back: slower than fp32.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")

#: ``amp: auto`` on a CPU with native bf16. False: measured, bf16 moved the synthetic results of
#: min-max, Deep MIL and CAM-Max (and CAM-Avg's GlaS test error) by more than the seed-to-seed
#: spread, so fp32 stays the default (issue 19's rule; results/benchmarks.md, "fp32 vs bf16");
#: ``train.amp=true`` turns bf16 on.
CPU_AUTO_BF16 = False

#: ``channels_last: auto`` on a CPU: measured faster or even on every trunk family of the benchmark
#: (ResNet, EfficientNet, the tiny test trunks; results/benchmarks.md, benchmarks/cpu_fastpath.py).
CPU_AUTO_CHANNELS_LAST = True


def check_choice(name: str, value) -> None:
    """One clear message for a value that is not auto/true/false."""
    if not (value is True or value is False or value == "auto"):
        raise ConfigError(f"{name} must be auto, true or false, got {value!r}")


def cpu_flags(path: str | Path = "/proc/cpuinfo") -> set[str]:
    """The instruction-set flags of the first CPU in ``path`` (empty when unreadable)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


@functools.lru_cache(maxsize=1)
def cpu_bf16_support() -> tuple[bool, str]:
    """(native bf16 on this CPU?, why): /proc/cpuinfo flags, else torch's own CPU capability."""
    flags = cpu_flags()
    native = [f for f in BF16_CPU_FLAGS if f in flags]
    if native:
        return True, f"cpu has {native[-1]}"
    capability = torch.backends.cpu.get_cpu_capability()
    if not flags and "AMX" in capability.upper():  # no /proc/cpuinfo (not Linux): trust torch
        return True, f"torch cpu capability {capability}"
    return False, f"cpu has no native bf16 ({' / '.join(BF16_CPU_FLAGS)} missing; torch capability {capability})"


@dataclass(frozen=True)
class FastPath:
    """The resolved speed-ups of one run and why each was chosen."""

    amp: bool  # bf16 autocast
    channels_last: bool
    amp_reason: str
    channels_last_reason: str

    def env(self) -> dict:
        """What env.json records: the EFFECTIVE settings."""
        return {
            "amp_dtype": "bf16" if self.amp else "fp32",
            "amp_reason": self.amp_reason,
            "channels_last": self.channels_last,
            "channels_last_reason": self.channels_last_reason,
        }


def resolve(device: torch.device, amp="auto", channels_last="auto", bf16_support: tuple[bool, str] | None = None) -> FastPath:
    """Resolve ``train.amp`` / ``train.channels_last`` for ``device``."""
    check_choice("train.amp", amp)
    check_choice("train.channels_last", channels_last)
    if device.type == "cuda":
        amp_on, amp_why = amp is not False, f"{'bf16' if amp is not False else 'fp32'}: train.amp={_show(amp)} on cuda"
        cl_on, cl_why = channels_last is not False, f"train.channels_last={_show(channels_last)} on cuda"
        return FastPath(amp_on, cl_on, amp_why, cl_why)
    if device.type != "cpu":  # mps and others: leave them as they are
        return FastPath(False, False, f"fp32: no autocast on {device.type}", f"contiguous on {device.type}")
    native, why = bf16_support or cpu_bf16_support()
    if amp is True:
        amp_on, amp_why = True, f"bf16: train.amp=true ({why}{'' if native else '; slower than fp32'})"
    elif amp is False:
        amp_on, amp_why = False, "fp32: train.amp=false"
    elif native and CPU_AUTO_BF16:
        amp_on, amp_why = True, f"bf16: train.amp=auto and {why}"
    elif native:
        amp_on, amp_why = False, (f"fp32: train.amp=auto keeps fp32 on cpu ({why}, but bf16 moved results beyond the "
                                  "seed spread, results/benchmarks.md; train.amp=true for bf16)")
    else:
        amp_on, amp_why = False, f"fp32: train.amp=auto and {why}"
    if channels_last == "auto":
        cl_on, cl_why = CPU_AUTO_CHANNELS_LAST, "train.channels_last=auto: measured faster or even on cpu"
    else:
        cl_on, cl_why = channels_last, f"train.channels_last={_show(channels_last)}"
    return FastPath(amp_on, cl_on, amp_why, cl_why)


def _show(value) -> str:
    return value if isinstance(value, str) else str(value).lower()


__all__ = ["FastPath", "resolve", "cpu_bf16_support", "cpu_flags", "CHOICES"]
