"""Which speed-ups a run gets on the device at hand: bf16 autocast and the channels_last memory
layout, on CUDA and on CPUs that have them, and on a CPU a malloc that keeps freed memory for
reuse, with the reason for each (recorded in env.json).

``train.amp`` and ``train.channels_last`` take ``auto`` (what was measured fastest where the
hardware supports it, see results/benchmarks.md), ``true`` (on, even where it is slow) or
``false``. The choice is resolved once per run so training, validation, min-max's erasing
passes and the test evaluation all run the same way.
"""
from __future__ import annotations

import ctypes
import functools
import platform
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
#: spread, so fp32 stays the default (the rule: a faster mode becomes the default only if it leaves the results within the seed spread; results/benchmarks.md, "fp32 vs bf16");
#: ``train.amp=true`` turns bf16 on.
CPU_AUTO_BF16 = False

#: ``channels_last: auto`` on a CPU: measured faster or even on every trunk family of the benchmark
#: (ResNet, EfficientNet, the tiny test trunks; results/benchmarks.md, benchmarks/cpu_fastpath.py).
CPU_AUTO_CHANNELS_LAST = True


#: glibc's mallopt parameters (malloc.h). By default glibc hands every freed block above its mmap
#: threshold (dynamic, 32 MiB at most on 64-bit) back to the kernel, and the next allocation pays a
#: page fault per 4 KiB to get it again: a lite0 forward at 544x800, batch 16 (one Score-CAM batch
#: on a GlaS test image), spent half its CPU time in the kernel. Raising both thresholds keeps freed
#: activations in the process for reuse: 1.87x faster there, the same bits (results/benchmarks.md).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: blocks up to this size come from (and go back to) the process's own heap; larger ones (Score-CAM's
#: 2-7 GB stacks of masked inputs) are still mapped and unmapped. mallopt takes an int.
KEEP_FREED_UP_TO = 1 << 30
#: freed memory at the top of the heap is returned to the kernel only above this size
TRIM_ABOVE = 2**31 - 1


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


def keep_freed_memory(setting, device: torch.device) -> tuple[bool, str]:
    """Apply ``train.keep_freed_memory`` (auto = on a CPU device): raise glibc malloc's mmap and
    trim thresholds so freed blocks are reused instead of unmapped. Process-wide, and it stays on
    for the rest of the process (a sweep's later jobs too). Changes speed and memory held, never
    results. Returns (on?, why) for env.json."""
    check_choice("train.keep_freed_memory", setting)
    if setting is False or (setting == "auto" and device.type != "cpu"):
        return False, f"train.keep_freed_memory={_show(setting)} on {device.type}: malloc left as is"
    if platform.libc_ver()[0] != "glibc":
        return False, f"train.keep_freed_memory={_show(setting)}: not glibc ({platform.system()}), malloc left as is"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False, f"train.keep_freed_memory={_show(setting)}: glibc's mallopt not found, malloc left as is"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    if not (mallopt(M_MMAP_THRESHOLD, KEEP_FREED_UP_TO) and mallopt(M_TRIM_THRESHOLD, TRIM_ABOVE)):
        return False, f"train.keep_freed_memory={_show(setting)}: mallopt refused the thresholds, malloc left as is"
    return True, (f"train.keep_freed_memory={_show(setting)} on {device.type}: glibc mmap threshold "
                  f"{KEEP_FREED_UP_TO >> 20} MiB, trim threshold {TRIM_ABOVE >> 20} MiB (measured faster, same results)")


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


__all__ = ["FastPath", "resolve", "keep_freed_memory", "cpu_bf16_support", "cpu_flags", "CHOICES"]
