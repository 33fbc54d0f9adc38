"""A configurable plain CNN: stages of convolutions, each followed by pooling, then an FC head."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from cnnlab.models import CONTEXT, MODELS
from cnnlab.models.layers import Activation, Init, Norm, initialize, make_activation, norm1d, norm2d


@MODELS.register("cnn", context=CONTEXT)
def cnn(
    in_channels: int,
    num_classes: int,
    input_size: tuple[int, int],
    channels: list[int] = [32, 64, 128],  # noqa: B006  (config defaults are read, never mutated)
    convs_per_stage: int | list[int] = 1,
    kernel_size: int = 3,
    pool: Literal["max", "avg", "none"] = "max",
    norm: Norm = "batch",
    activation: Activation = "relu",
    dropout: float = 0.0,
    conv_dropout: float = 0.0,
    fc_hidden: list[int] = [],  # noqa: B006
    fc_norm: bool = False,
    global_pool: bool = False,
    init: Init = "default",
) -> nn.Module:
    """Stage i: convs_per_stage[i] x (conv kxk -> norm -> activation), pool 2x2, conv-dropout."""
    convs = [convs_per_stage] * len(channels) if isinstance(convs_per_stage, int) else convs_per_stage
    if len(convs) != len(channels):
        from cnnlab.errors import ConfigError

        raise ConfigError(f"model.convs_per_stage: {len(convs)} entries but model.channels has {len(channels)}")
    layers: list[nn.Module] = []
    c = in_channels
    for width, n in zip(channels, convs):
        for _ in range(n):
            layers += [
                nn.Conv2d(c, width, kernel_size, padding=kernel_size // 2, bias=norm == "none"),
                norm2d(norm, width),
                make_activation(activation),
            ]
            c = width
        if pool != "none":
            layers.append(nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2))
        if conv_dropout > 0:
            layers.append(nn.Dropout2d(conv_dropout))
    if global_pool:
        layers.append(nn.AdaptiveAvgPool2d(1))
    features = nn.Sequential(*layers)
    with torch.no_grad():
        flat = features.eval()(torch.zeros(1, in_channels, *input_size)).numel()
    features.train()

    head: list[nn.Module] = [nn.Flatten()]
    width = flat
    for hidden in fc_hidden:
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head += [nn.Linear(width, hidden, bias=not fc_norm), norm1d("batch" if fc_norm else "none", hidden), make_activation(activation)]
        width = hidden
    if dropout > 0:
        head.append(nn.Dropout(dropout))
    head.append(nn.Linear(width, num_classes))
    model = nn.Sequential(features, nn.Sequential(*head))
    initialize(model, init, activation)
    return model
