"""VGG (torchvision parity, CIFAR head) and the small VGG-style nets, on real CIFAR-10 images."""

from __future__ import annotations

import pytest
import torch
import torchvision
from real_images import cifar, on_meta, train_step
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models import MODELS, build_model, count_parameters


def build(name, shape=(3, 32, 32), k=10, **opts):
    return build_model({"name": name, **MODELS.validate(name, opts, "model")}, shape, k)


@pytest.mark.parametrize("k", [1000, 10])
@pytest.mark.parametrize("variant, norm, reference", [("16", "none", "vgg16"), ("16", "batch", "vgg16_bn"),
                                                       ("A", "batch", "vgg11_bn"), ("19", "none", "vgg19")])
def test_vgg_with_imagenet_head_has_torchvisions_parameters(k, variant, norm, reference):
    ours = on_meta(build, "vgg", shape=(3, 224, 224), k=k, variant=variant, norm=norm)
    theirs = on_meta(torchvision.models.get_model, reference, num_classes=k)
    assert count_parameters(ours) == count_parameters(theirs)
    assert [tuple(p.shape) for p in ours.parameters()] == [tuple(p.shape) for p in theirs.parameters()]


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_vgg_a_with_cifar_head_on_real_images(norm):
    torch.manual_seed(0)
    m = build("vgg", variant="A", norm=norm)  # auto head at 32 px: cifar
    assert not any(isinstance(x, nn.AdaptiveAvgPool2d) and x.output_size == 7 for x in m.modules())
    features = count_parameters(on_meta(torchvision.models.get_model, "vgg11_bn" if norm == "batch" else "vgg11").features)
    assert count_parameters(m) == features + (512 * 512 + 512) + (512 * 10 + 10)
    assert sum(isinstance(x, nn.Conv2d) for x in m.modules()) == 8
    x, y = cifar(2)
    train_step(m, x, y, 10)


def test_vgg_head_choice_and_widths():
    assert any(isinstance(x, nn.AdaptiveAvgPool2d) and x.output_size == 7
               for x in on_meta(build, "vgg", shape=(3, 128, 128), widths=[8, 8, 16, 16, 16], fc_hidden=[32]).modules())
    m = on_meta(build, "vgg", variant="13", head="cifar", widths=[8, 8, 16, 16, 16], fc_hidden=[], activation="tanh")
    linears = [x for x in m.modules() if isinstance(x, nn.Linear)]
    assert [(x.in_features, x.out_features) for x in linears] == [(16, 10)]
    assert sum(isinstance(x, nn.Conv2d) for x in m.modules()) == 10 and any(isinstance(x, nn.Tanh) for x in m.modules())
    with pytest.raises(ConfigError, match="cannot take 1x28x28 images"):
        build("vgg", shape=(1, 28, 28), widths=[4, 4, 4, 4, 4])
    with pytest.raises(ConfigError, match="model.variant"):
        MODELS.validate("vgg", {"variant": "17"}, "model")


@pytest.mark.parametrize("channels, neurons", [([4, 8], [32, 32]), ([16, 32], [128, 128]), ([64, 128], [512, 512])])
def test_small_vgg_parameter_count_by_hand(channels, neurons):
    c1, c2 = channels
    n1, n2 = neurons
    plain = build("small_vgg", hidden_channels=channels, hidden_neurons=neurons)
    conv = (3 * c1 * 9 + c1) + (c1 * c1 * 9 + c1) + (c1 * c2 * 9 + c2) + (c2 * c2 * 9 + c2)
    fc = (c2 * 8 * 8 * n1 + n1) + (n1 * n2 + n2) + (n2 * 10 + 10)
    assert count_parameters(plain) == conv + fc
    bn = build("small_vgg", hidden_channels=channels, hidden_neurons=neurons, conv_bn=True, fc_bn=True)
    # With BN: no biases before it, and BN's scale and shift per channel or neuron instead.
    conv_bn = conv - (2 * c1 + 2 * c2) + 2 * (2 * c1 + 2 * c2)
    fc_bn = fc - (n1 + n2) + 2 * (n1 + n2)
    assert count_parameters(bn) == conv_bn + fc_bn


@pytest.mark.parametrize("activation, conv_bn, fc_bn", [("relu", True, False), ("tanh", False, True), ("softplus", True, True)])
def test_small_vgg_layout_on_real_cifar(activation, conv_bn, fc_bn):
    torch.manual_seed(0)
    m = build("small_vgg", hidden_channels=[16, 32], hidden_neurons=[128, 128], conv_bn=conv_bn, fc_bn=fc_bn,
              activation=activation, dropout=0.5, conv_dropout=0.1, init="xavier_normal")
    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "softplus": nn.Softplus}[activation]
    features, head = m
    expected = [nn.Conv2d, nn.BatchNorm2d if conv_bn else nn.Identity, act] * 2 + [nn.MaxPool2d, nn.Dropout2d]
    assert [type(x) for x in features] == expected * 2
    hidden = [nn.Linear, nn.BatchNorm1d if fc_bn else nn.Identity, act, nn.Dropout]
    assert [type(x) for x in head] == [nn.Flatten] + hidden * 2 + [nn.Linear]
    assert head[1].in_features == 32 * 8 * 8 and head[-1].out_features == 10
    x, y = cifar(8)
    train_step(m, x, y, 10)
