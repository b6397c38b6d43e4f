"""The CPU/CUDA fast path: train.amp / train.channels_last resolve to what the hardware has, and
say why (env.json)."""
import pytest
import torch

from wslbench.errors import ConfigError
from wslbench.train import fastpath
from wslbench.train.fastpath import cpu_flags, resolve

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
