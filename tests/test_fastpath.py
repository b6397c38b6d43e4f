"""The CPU/CUDA fast path: train.amp / train.channels_last resolve to what the hardware has, and
say why (env.json); train.keep_freed_memory stops the page faults of reallocated blocks."""
import json
import platform
import subprocess
import sys

import pytest
import torch

from wslbench.errors import ConfigError
from wslbench.train import fastpath
from wslbench.train.fastpath import cpu_flags, keep_freed_memory, resolve

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
NATIVE, EMULATED = (True, "cpu has avx512_bf16"), (False, "cpu has no native bf16")


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu sse avx512f avx512_bf16\n\nprocessor\t: 1\n")
    assert {"avx512f", "avx512_bf16"} <= cpu_flags(info) and "amx_bf16" not in cpu_flags(info)
    assert cpu_flags(tmp_path / "missing") == set()


def test_explicit_choices_win_on_cpu_whatever_the_hardware():
    for support in (NATIVE, EMULATED):
        on = resolve(CPU, True, True, bf16_support=support)
        off = resolve(CPU, False, False, bf16_support=support)
        assert (on.amp, on.channels_last, off.amp, off.channels_last) == (True, True, False, False)
        assert on.env()["amp_dtype"] == "bf16" and off.env()["amp_dtype"] == "fp32"
    assert "slower than fp32" in resolve(CPU, True, False, bf16_support=EMULATED).amp_reason


def test_auto_never_picks_bf16_on_a_cpu_without_native_bf16():
    fp = resolve(CPU, "auto", "auto", bf16_support=EMULATED)
    assert not fp.amp and "no native bf16" in fp.amp_reason
    assert fp.channels_last is fastpath.CPU_AUTO_CHANNELS_LAST


def test_auto_on_a_bf16_cpu_follows_the_measured_policy(monkeypatch):
    for policy in (True, False):
        monkeypatch.setattr(fastpath, "CPU_AUTO_BF16", policy)
        fp = resolve(CPU, "auto", "auto", bf16_support=NATIVE)
        assert fp.amp is policy and "avx512_bf16" in fp.amp_reason


def test_cuda_keeps_bf16_and_channels_last_unless_turned_off():
    fp = resolve(CUDA, "auto", "auto")
    assert fp.amp and fp.channels_last
    assert not resolve(CUDA, False, False).amp


@pytest.mark.parametrize("value", ["fast", 1, "yes", None])
def test_bad_values_are_config_errors(value):
    with pytest.raises(ConfigError, match="auto, true or false"):
        resolve(CPU, value, "auto")
    with pytest.raises(ConfigError, match="train.channels_last"):
        resolve(CPU, False, value)


#: in a fresh process: apply train.keep_freed_memory, then allocate and free a 64 MiB tensor (above
#: glibc's largest default mmap threshold, 32 MiB) again and again, counting the minor page faults of
#: each allocation (one per 4 KiB page touched for the first time since the kernel handed it out)
REALLOCATE = """
import json, resource, sys, torch
from wslbench.train.fastpath import keep_freed_memory
on, why = keep_freed_memory(json.loads(sys.argv[1]), torch.device("cpu"))
faults = []
for _ in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(1 << 24)  # 64 MiB, freed at once
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"on": on, "why": why, "faults": faults}))
"""


def reallocate(setting) -> dict:
    out = subprocess.run([sys.executable, "-c", REALLOCATE, json.dumps(setting)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_keep_freed_memory_reuses_freed_blocks_instead_of_faulting_them_in_again():
    off, on = reallocate(False), reallocate(True)
    assert not off["on"] and "malloc left as is" in off["why"]
    if platform.libc_ver()[0] != "glibc":  # nothing to set: it must say so, not pretend
        assert not on["on"] and "not glibc" in on["why"]
        return
    pages = (64 << 20) // 4096
    assert on["on"] and "mmap threshold 1024 MiB" in on["why"]
    # glibc's default: every allocation maps fresh pages and faults each one in
    assert all(f >= pages for f in off["faults"][-4:]), off["faults"]
    # kept: once the heap has grown (a few rounds), the freed block is reused without a fault
    assert sum(on["faults"][-4:]) < pages // 16, on["faults"]


def test_keep_freed_memory_auto_is_for_cpu_devices_and_checks_its_value():
    on, why = keep_freed_memory("auto", CUDA)
    assert not on and "on cuda: malloc left as is" in why
    with pytest.raises(ConfigError, match="train.keep_freed_memory must be auto, true or false"):
        keep_freed_memory("fast", CPU)
