"""A configurable plain CNN: stages of convolutions, each followed by pooling, then an FC head."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from cnnlab.errors import ConfigError
from cnnlab.lazy import lazy
from cnnlab.models.layers import (
    Activation,
    Init,
    Norm,
    Prob,
    initialize,
    make_activation,
    norm1d,
    norm2d,
)
from cnnlab.models.registry import CONTEXT, MODELS

torch = lazy("torch")
nn = lazy("torch.nn")


def convs_for_depth(depth: int, stages: int, fc_layers: int) -> list[int]:
    """Convolutions per stage so that convs + FC layers = depth; earlier stages take the remainder.

    The same count as ResNet depths (layers with weights on the path), e.g. with 4 stages and
    one hidden FC layer: 8 -> [2, 2, 1, 1], 10 -> [2, 2, 2, 2], 12 -> [3, 3, 2, 2].
    """
    convs = depth - fc_layers
    if convs < stages:
        raise ConfigError(f"model.depth: {depth} layers leave {convs} convolution(s) after {fc_layers} FC layer(s), "
                          f"fewer than the {stages} stages of model.channels; raise depth or use fewer stages")
    base, extra = divmod(convs, stages)
    return [base + (1 if i < extra else 0) for i in range(stages)]


@MODELS.register("cnn", context=CONTEXT)
def cnn(
    in_channels: int,
    num_classes: int,
    input_size: tuple[int, int],
    channels: list[int] = [32, 64, 128],  # noqa: B006  (config defaults are read, never mutated)
    convs_per_stage: int | list[int] | None = None,
    depth: Annotated[int, Field(ge=2)] | None = None,
    kernel_size: int = 3,
    pool: Literal["max", "avg", "none"] = "max",
    norm: Norm = "batch",
    activation: Activation = "relu",
    dropout: Prob = 0.0,
    conv_dropout: Prob = 0.0,
    fc_hidden: list[int] = [],  # noqa: B006
    fc_norm: bool = False,
    global_pool: bool = False,
    init: Init = "default",
) -> nn.Module:
    """Stage i: convs_per_stage[i] x (conv kxk -> norm -> activation), pool 2x2, conv-dropout.

    convs_per_stage: one number for every stage, or one per stage; 1 when neither it nor depth
      is given.
    depth: total layers with weights (convolutions + FC layers, the ResNet count); the
      convolutions are spread over the stages of `channels`, earlier stages first. With
      channels [64, 128, 256, 512] and fc_hidden [512]: 8, 10, 12 -> [2,2,1,1], [2,2,2,2],
      [3,3,2,2] convs per stage. Give depth or convs_per_stage, not both.
    Head: [dropout -> FC -> (BN) -> act] for each of fc_hidden, dropout, FC to the classes.
    """
    if depth is not None:
        if convs_per_stage is not None:
            raise ConfigError("model.convs_per_stage: set together with model.depth, which fixes it; give one of the two")
        convs = convs_for_depth(depth, len(channels), len(fc_hidden) + 1)
    else:
        per = 1 if convs_per_stage is None else convs_per_stage
        convs = [per] * len(channels) if isinstance(per, int) else per
    if len(convs) != len(channels):
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
