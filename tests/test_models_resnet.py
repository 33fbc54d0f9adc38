"""ResNets: torchvision parity (18, 50), depth presets counted by hand, blocks on real images."""

from __future__ import annotations

import pytest
import torch
import torchvision
from real_images import cifar, fashion, on_meta, train_step
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models import MODELS, build_model, count_parameters
from cnnlab.models.blocks import BasicBlock, Bottleneck


def build(shape=(3, 64, 64), k=10, **opts):
    return build_model({"name": "resnet", **MODELS.validate("resnet", opts, "model")}, shape, k)


def basic(c_in: int, w: int, stride: int) -> int:
    """Parameters of a basic block with BN, counted by hand: two 3x3 convs, two BNs, projection if needed."""
    proj = c_in * w + 2 * w if stride != 1 or c_in != w else 0
    return 9 * c_in * w + 9 * w * w + 2 * (2 * w) + proj


def weighted_depth(m: nn.Module) -> int:
    """Convs and FC layers on the main path (shortcut projections excluded): the depth convention."""
    n = 0
    for name, x in m.named_modules():
        if isinstance(x, (nn.Conv2d, nn.Linear)) and "shortcut" not in name:
            n += 1
    return n


@pytest.mark.parametrize("k", [1000, 10])
@pytest.mark.parametrize("depth, reference", [(18, "resnet18"), (50, "resnet50")])
def test_imagenet_presets_have_torchvisions_parameters(k, depth, reference):
    ours = on_meta(build, shape=(3, 224, 224), k=k, depth=depth)
    theirs = on_meta(torchvision.models.get_model, reference, num_classes=k)
    assert count_parameters(ours) == count_parameters(theirs)
    assert sorted(tuple(p.shape) for p in ours.parameters()) == sorted(tuple(p.shape) for p in theirs.parameters())
    assert weighted_depth(ours) == depth


@pytest.mark.parametrize("depth, blocks", [(11, [1, 1, 1, 1]), (15, [2, 2, 1, 1]), (19, [2, 2, 2, 2])])
def test_small_presets_for_tiny_imagenet_count_by_hand(depth, blocks):
    m = on_meta(build, k=200, depth=depth)
    assert weighted_depth(m) == depth
    stem = (3 * 64 * 9 + 2 * 64) + (64 * 64 * 9 + 2 * 64)  # two 3x3 convs with BN at 64 px
    body, c = 0, 64
    for i, (n, w) in enumerate(zip(blocks, [64, 128, 256, 512])):
        for j in range(n):
            body += basic(c, w, 2 if i > 0 and j == 0 else 1)
            c = w
    assert count_parameters(m) == stem + body + (512 * 200 + 200)


def test_resnet11_on_real_64px_images_with_both_dropouts():
    torch.manual_seed(0)
    m = build(k=200, depth=11, widths=[8, 16, 32, 64], dropout=0.3, block_dropout=0.1)
    assert sum(isinstance(x, nn.Dropout2d) and x.p == 0.1 for x in m.modules()) == 4
    assert any(type(x) is nn.Dropout and x.p == 0.3 for x in m.modules())
    x, y = cifar(4, size=64)
    train_step(m, x, y, 200)


@pytest.mark.parametrize("depth", [20, 32, 56])
def test_cifar_presets_count_by_hand(depth):
    n = (depth - 2) // 6
    m = on_meta(build, shape=(3, 32, 32), depth=depth)
    assert weighted_depth(m) == depth
    assert [x.conv1.out_channels for x in m.modules() if isinstance(x, BasicBlock)] == [16] * n + [32] * n + [64] * n
    body, c = 0, 16
    for i, w in enumerate([16, 32, 64]):
        for j in range(n):
            body += basic(c, w, 2 if i > 0 and j == 0 else 1)
            c = w
    assert count_parameters(m) == (3 * 16 * 9 + 32) + body + (64 * 10 + 10)


def test_resnet20_on_real_fashion_mnist_kaggle_size():
    torch.manual_seed(0)
    m = build(shape=(1, 28, 28), depth=20, activation="leaky_relu", norm="group")
    x, y = fashion(8)
    train_step(m, x, y, 10)


def test_bottleneck_blocks_on_real_images():
    torch.manual_seed(0)
    m = build(shape=(3, 32, 32), blocks=[1, 1, 1], widths=[8, 16, 32], block="bottleneck", block_dropout=0.1)
    b = [x for x in m.modules() if isinstance(x, Bottleneck)]
    assert [(x.conv1.out_channels, x.conv3.out_channels, x.conv2.stride[0]) for x in b] == [(8, 32, 1), (16, 64, 2), (32, 128, 2)]
    assert all(float(x.bn3.weight.detach().abs().sum()) == 0 for x in b)  # zero-init residual: blocks start as identity
    assert m[-1].in_features == 128
    x, y = cifar(4)
    train_step(m, x, y, 10)


def test_depth_conflicts_and_unknown_depths_are_config_errors():
    with pytest.raises(ConfigError, match="model.blocks: set together with model.depth"):
        build(depth=18, blocks=[2, 2, 2, 2])
    with pytest.raises(ConfigError, match="model.depth: no ResNet preset of depth 17; choose one of 11, 15, 18, 19, 20"):
        build(depth=17)
    with pytest.raises(ConfigError, match="model.block: ResNet-18 is made of basic blocks"):
        build(depth=18, block="bottleneck")
    with pytest.raises(ConfigError, match="model.stem_convs: set together with model.depth"):
        build(depth=11, stem_convs=1)
    with pytest.raises(ConfigError, match="model.blocks: 2 stages but model.widths has 3"):
        build(blocks=[1, 1], widths=[8, 16, 32])
