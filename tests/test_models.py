"""Model builders: shapes, options, and refusals for inputs a model cannot take."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models import MODELS, build_model, count_parameters


def build(name, shape=(1, 28, 28), k=10, **opts):
    return build_model({"name": name, **MODELS.validate(name, opts, "model")}, shape, k)


def test_cnn_options_change_the_network():
    m = build("cnn", channels=[8, 16, 32], convs_per_stage=[1, 2, 1], kernel_size=5, pool="avg", norm="none",
              activation="tanh", dropout=0.3, conv_dropout=0.1, fc_hidden=[64])
    assert m(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    assert len(convs) == 4 and convs[0].kernel_size == (5, 5) and convs[0].bias is not None
    assert any(isinstance(x, nn.AvgPool2d) for x in m.modules())
    assert any(isinstance(x, nn.Tanh) for x in m.modules())
    assert any(isinstance(x, nn.Dropout2d) and x.p == 0.1 for x in m.modules())
    assert any(isinstance(x, nn.Dropout) and x.p == 0.3 for x in m.modules())
    assert not any(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    bn = build("cnn", channels=[8, 16], norm="batch")
    assert sum(isinstance(x, nn.BatchNorm2d) for x in bn.modules()) == 2


def test_cnn_parameter_count_is_what_the_layers_say():
    m = build("cnn", channels=[4, 8], norm="none")
    # conv 1->4 3x3 + bias, conv 4->8 3x3 + bias, fc 8*7*7 -> 10.
    assert count_parameters(m) == (4 * 9 + 4) + (8 * 4 * 9 + 8) + (8 * 49 * 10 + 10)


@pytest.mark.parametrize("size, stem_kernel", [(28, 3), (32, 3), (64, 3), (224, 7)])
def test_resnet_stem_suits_the_input_size(size, stem_kernel):
    m = build("resnet", shape=(3, size, size), blocks=[1, 1], widths=[8, 16])
    first = next(x for x in m.modules() if isinstance(x, nn.Conv2d))
    assert first.kernel_size == (stem_kernel, stem_kernel)
    assert m(torch.zeros(2, 3, size, size)).shape == (2, 10)


def test_resnet18_layout_matches_torchvision_parameter_count():
    ours = build("resnet", shape=(3, 224, 224), k=1000, blocks=[2, 2, 2, 2], widths=[64, 128, 256, 512])
    assert count_parameters(ours) == count_parameters(torchvision.models.resnet18())


def test_torchvision_models_with_grayscale_input():
    m = build("torchvision:resnet18", shape=(1, 32, 32), k=7)
    assert m(torch.zeros(2, 1, 32, 32)).shape == (2, 7)
    with pytest.raises(ConfigError, match="torchvision has no classification model 'resnet81'"):
        build("torchvision:resnet81")


def test_a_model_that_cannot_take_the_input_is_refused():
    with pytest.raises(ConfigError, match="cannot take 1x8x8 images"):
        build("cnn", shape=(1, 8, 8), channels=[4, 4, 4, 4, 4])
    with pytest.raises(ConfigError, match="convs_per_stage: 3 entries"):
        build("cnn", channels=[4, 8], convs_per_stage=[1, 1, 1])


def conv_counts(m: nn.Module) -> list[int]:
    """Convolutions per stage (a stage ends at each pooling layer)."""
    counts, n = [], 0
    for x in m.modules():
        if isinstance(x, nn.Conv2d):
            n += 1
        elif isinstance(x, (nn.MaxPool2d, nn.AvgPool2d)):
            counts.append(n)
            n = 0
    return counts


@pytest.mark.parametrize("depth, convs", [(8, [2, 2, 1, 1]), (10, [2, 2, 2, 2]), (12, [3, 3, 2, 2])])
def test_cnn_depth_presets_count_convs_and_fc_layers_like_resnet(depth, convs):
    from real_images import on_meta

    m = on_meta(build, "cnn", shape=(3, 64, 64), k=200, depth=depth, channels=[64, 128, 256, 512], fc_hidden=[512],
                conv_dropout=0.1, dropout=0.5)
    assert conv_counts(m) == convs
    linears = [x for x in m.modules() if isinstance(x, nn.Linear)]
    assert sum(convs) + len(linears) == depth
    assert [(x.in_features, x.out_features) for x in linears] == [(512 * 4 * 4, 512), (512, 200)]


def test_cnn_depth_on_real_64px_images_and_its_conflicts():
    from real_images import cifar, train_step

    torch.manual_seed(0)
    m = build("cnn", shape=(3, 64, 64), k=200, depth=8, channels=[8, 16, 32, 64], fc_hidden=[32], norm="none",
              conv_dropout=0.1, dropout=0.3)
    assert conv_counts(m) == [2, 2, 1, 1]
    x, y = cifar(4, size=64)
    train_step(m, x, y, 200)
    with pytest.raises(ConfigError, match="model.convs_per_stage: set together with model.depth"):
        build("cnn", depth=8, convs_per_stage=2)
    with pytest.raises(ConfigError, match="model.depth: 4 layers leave 3 convolution"):
        build("cnn", depth=4, channels=[4, 8, 16, 32])
