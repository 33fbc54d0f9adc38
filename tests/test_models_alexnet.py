"""AlexNet: torchvision parity for the paper layout, the BN variant on real photos, stems by size."""

from __future__ import annotations

import pytest
import torch
import torchvision
from real_images import cifar, on_meta, train_step
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models import MODELS, build_model, count_parameters


def build(shape=(3, 224, 224), k=10, **opts):
    return build_model({"name": "alexnet", **MODELS.validate("alexnet", opts, "model")}, shape, k)


@pytest.mark.parametrize("k", [1000, 10])
def test_paper_alexnet_has_torchvisions_parameters(k):
    ours = on_meta(build, k=k)
    theirs = on_meta(torchvision.models.alexnet, num_classes=k)
    assert count_parameters(ours) == count_parameters(theirs)
    assert [tuple(p.shape) for p in ours.parameters()] == [tuple(p.shape) for p in theirs.parameters()]


def test_bn4_alexnet_on_real_128px_photos_counts_by_hand():
    torch.manual_seed(0)
    m = build(shape=(3, 128, 128), k=500, variant="bn4", fc_hidden=[512, 256])
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    # 128 px picks the 7x7 stride-2 stem: 128 -> 64, then four 2x2 pools: 32, 16, 8, 4.
    assert [(c.kernel_size[0], c.stride[0]) for c in convs] == [(7, 2), (5, 1), (3, 1), (3, 1)]
    assert sum(isinstance(x, nn.BatchNorm2d) for x in m.modules()) == 4
    assert sum(isinstance(x, nn.BatchNorm1d) for x in m.modules()) == 2
    assert sum(isinstance(x, nn.Dropout) for x in m.modules()) == 2
    conv = 64 * 3 * 49 + 128 * 64 * 25 + 256 * 128 * 9 + 256 * 256 * 9  # no conv bias before BN
    bn = 2 * (64 + 128 + 256 + 256) + 2 * (512 + 256)
    fc = 256 * 4 * 4 * 512 + 512 * 256 + (256 * 500 + 500)  # hidden FCs have BN instead of a bias
    assert count_parameters(m) == conv + bn + fc
    x, y = cifar(8, size=128)
    train_step(m, x, y, 500)


@pytest.mark.parametrize("size, stem", [(28, (3, 1)), (32, (3, 1)), (64, (3, 1)), (128, (7, 2)), (224, (11, 4))])
def test_stem_and_head_suit_the_input_size(size, stem):
    m = on_meta(build, shape=(3, size, size), k=10, widths=[8, 8, 8, 8, 8], fc_hidden=[16])
    first = next(x for x in m.modules() if isinstance(x, nn.Conv2d))
    assert (first.kernel_size[0], first.stride[0]) == stem
    pool = next(x for x in m.modules() if isinstance(x, nn.AdaptiveAvgPool2d))
    # Never pooled up past the map's own size: 28 px leaves 2x2, 32 px 3x3, larger inputs 6x6.
    assert pool.output_size == {28: (2, 2), 32: (3, 3)}.get(size, (6, 6))


def test_paper_alexnet_options_on_real_cifar():
    torch.manual_seed(0)
    m = build(shape=(3, 32, 32), widths=[16, 32, 32, 32, 32], fc_hidden=[64, 64], norm="batch", fc_norm=True,
              activation="elu", init="kaiming", dropout=0.3)
    assert sum(isinstance(x, nn.BatchNorm2d) for x in m.modules()) == 5
    assert sum(isinstance(x, nn.BatchNorm1d) for x in m.modules()) == 2
    assert all(x.p == 0.3 for x in m.modules() if isinstance(x, nn.Dropout))
    assert any(isinstance(x, nn.ELU) for x in m.modules())
    x, y = cifar(8)
    train_step(m, x, y, 10)
    with pytest.raises(ConfigError, match="variant bn4 has 4 convolutions, got 5 widths"):
        build(variant="bn4", widths=[8, 8, 8, 8, 8])
