"""The options every family shares (activation, norm, init) do what they say, on real images."""

from __future__ import annotations

import pytest
import torch
from real_images import cifar, train_step
from torch import nn

from cnnlab.models import MODELS, build_model
from cnnlab.models.layers import initialize

# Each family at a small width, so a forward/backward on real CIFAR images is cheap.
SMALL = {
    "cnn": {"channels": [8, 16], "fc_hidden": [16], "fc_norm": True},
    "resnet": {"blocks": [1, 1], "widths": [8, 16]},
    "alexnet": {"widths": [8, 8, 8, 8, 8], "fc_hidden": [16, 16], "fc_norm": True},
    "vgg": {"variant": "A", "widths": [4, 8, 8, 8, 8], "fc_hidden": [16], "fc_norm": True},
}
NORM_TYPES = {"batch": nn.BatchNorm2d, "group": nn.GroupNorm, "instance": nn.InstanceNorm2d, "none": None}
ACT_TYPES = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "gelu": nn.GELU, "tanh": nn.Tanh,
             "sigmoid": nn.Sigmoid, "softplus": nn.Softplus}


def build(name, **opts):
    return build_model({"name": name, **MODELS.validate(name, opts, "model")}, (3, 32, 32), 10)


@pytest.mark.parametrize("name", list(SMALL))
@pytest.mark.parametrize("norm", ["batch", "group", "layer", "instance", "none"])
def test_norm_option_in_every_family(name, norm):
    torch.manual_seed(0)
    m = build(name, norm=norm, **SMALL[name])
    kinds = {type(x) for x in m.modules()}
    if norm == "layer":
        assert any(isinstance(x, nn.GroupNorm) and x.num_groups == 1 for x in m.modules())
    elif NORM_TYPES[norm] is None:
        assert not kinds & {nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d}
        # Without a norm after them, convolutions need their bias back.
        assert all(x.bias is not None for x in m.modules() if isinstance(x, nn.Conv2d))
    else:
        assert NORM_TYPES[norm] in kinds
    x, y = cifar(4)
    train_step(m, x, y, 10)


@pytest.mark.parametrize("activation", list(ACT_TYPES))
def test_activation_option_in_every_family(activation):
    x, y = cifar(2)
    for name, opts in [*SMALL.items(), ("lenet", {}), ("small_vgg", {"hidden_channels": [4, 8], "hidden_neurons": [8, 8]})]:
        m = build(name, activation=activation, **opts)
        used = {type(a) for a in m.modules() if type(a) in ACT_TYPES.values()}
        assert used == {ACT_TYPES[activation]}, name
        train_step(m, x, y, 10)


def test_init_schemes_give_the_textbook_spreads():
    torch.manual_seed(0)
    conv, fc = nn.Conv2d(64, 128, 3), nn.Linear(1024, 512)
    model = nn.Sequential(conv, nn.Flatten(), fc)
    initialize(model, "kaiming", "relu")
    # He: std = sqrt(2 / fan), fan-out (128*9) for convs, fan-in (1024) for linear layers.
    assert conv.weight.std().item() == pytest.approx((2 / (128 * 9)) ** 0.5, rel=0.03)
    assert fc.weight.std().item() == pytest.approx((2 / 1024) ** 0.5, rel=0.03)
    assert not conv.bias.any() and not fc.bias.any()
    initialize(model, "kaiming", "tanh")
    assert fc.weight.std().item() == pytest.approx(5 / 3 / 1024**0.5, rel=0.03)
    initialize(model, "xavier_normal")
    assert fc.weight.std().item() == pytest.approx((2 / (1024 + 512)) ** 0.5, rel=0.03)
    initialize(model, "xavier_uniform")
    bound = (6 / (1024 + 512)) ** 0.5
    assert fc.weight.abs().max().item() <= bound and fc.weight.abs().max().item() > 0.99 * bound
    before = fc.weight.clone()
    initialize(model, "default")
    assert torch.equal(before, fc.weight)
