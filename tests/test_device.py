"""The device module: the memory-layout decision and the layout batches reach the model in."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab import device
from cnnlab.data.batches.memory import normalise
from cnnlab.errors import ConfigError
from cnnlab.models import build_model


def net(stride: int = 1):
    """A conv net whose shortcut-like layer is a 1x1 convolution of the given stride."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 1, stride=stride))


def test_false_is_always_nchw():
    for name in ("cpu", "cuda"):
        assert device.channels_last(False, torch.device(name), net()) is False


def test_cuda_auto_is_nhwc():
    assert device.channels_last("auto", torch.device("cuda"), net(2)) is True


def test_cpu_uses_nhwc_only_for_models_without_a_strided_1x1_conv():
    cpu = torch.device("cpu")
    assert device.channels_last("auto", cpu, net(1)) is True
    assert device.channels_last(True, cpu, net(1)) is True
    assert device.channels_last("auto", cpu, net(2)) is False
    with pytest.raises(ConfigError) as e:
        device.channels_last(True, cpu, net(2))
    assert "\n" not in str(e.value) and "('1')" in str(e.value) and str(e.value).startswith("train.channels_last")
    resnet = build_model({"name": "resnet", "depth": 20}, (3, 32, 32), 10)
    assert device.strided_pointwise_convs(resnet) and not device.channels_last("auto", cpu, resnet)


def test_other_devices_stay_nchw():
    assert device.channels_last("auto", torch.device("mps"), net()) is False
    with pytest.raises(ConfigError, match="train.channels_last"):
        device.channels_last(True, torch.device("mps"), net())


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
