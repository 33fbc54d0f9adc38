"""The device module: the memory-layout decision and the layout batches reach the model in."""

from __future__ import annotations

import pytest
import torch

from cnnlab import device
from cnnlab.data.loader import normalise
from cnnlab.errors import ConfigError


def test_false_is_always_nchw():
    assert device.channels_last(False, torch.device("cpu")) is False
    assert device.channels_last(False, torch.device("cuda")) is False


def test_cuda_auto_is_nhwc():
    assert device.channels_last("auto", torch.device("cuda")) is True


def test_unproven_devices_stay_nchw():
    assert device.channels_last("auto", torch.device("mps")) is False
    with pytest.raises(ConfigError, match="train.channels_last"):
        device.channels_last(True, torch.device("mps"))


@pytest.mark.skipif(not torch.cpu._is_avx512_supported(), reason="needs an AVX-512 CPU")
def test_avx512_cpu_refuses_nhwc_unless_onednn_is_held_to_avx2(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    cpu = torch.device("cpu")
    assert device.channels_last("auto", cpu) is False
    with pytest.raises(ConfigError) as e:
        device.channels_last(True, cpu)
    assert "\n" not in str(e.value) and "ONEDNN_MAX_CPU_ISA=AVX2" in str(e.value)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    assert device.channels_last("auto", cpu) is True
    assert device.channels_last(True, cpu) is True


def test_batches_get_the_chosen_layout_whatever_the_stored_strides():
    # A (N, H, W, C) array permuted to (N, C, H, W), as an RGB .npy is read: channels_last strides.
    x = torch.rand(4, 8, 8, 3).permute(0, 3, 1, 2)
    assert x.is_contiguous(memory_format=torch.channels_last)
    mean, std = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    nchw = normalise(x, mean, std, channels_last=False)
    assert nchw.is_contiguous() and not nchw.is_contiguous(memory_format=torch.channels_last)
    nhwc = normalise(x.contiguous(), mean, std, channels_last=True)
    assert nhwc.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(nchw, nhwc)
