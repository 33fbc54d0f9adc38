"""A configurable plain CNN: an optional stem, stages of convolutions each followed by pooling, an FC head."""

from __future__ import annotations

from collections import OrderedDict
from typing import Annotated, Literal

from pydantic import Field

from cnnlab.errors import ConfigError
from cnnlab.lazy import lazy
from cnnlab.models.layers import (
    Activation,
    Bias,
    Init,
    Norm,
    Positive,
    Prob,
    initialize,
    make_activation,
    norm1d,
    norm2d,
)
from cnnlab.models.registry import CONTEXT, MODELS

torch = lazy("torch")
nn = lazy("torch.nn")


def convs_for_depth(depth: int, stages: int, fc_layers: int, stem_convs: int = 0) -> list[int]:
    """Convolutions per stage so that stem + stage convs + FC layers = depth; earlier stages take the remainder.

    The same count as ResNet depths (layers with weights on the path), e.g. with 4 stages and
    one hidden FC layer: 8 -> [2, 2, 1, 1], 10 -> [2, 2, 2, 2], 12 -> [3, 3, 2, 2].
    """
    convs = depth - fc_layers - stem_convs
    if convs < stages:
        stem = f" and {stem_convs} stem convolution" if stem_convs else ""
        raise ConfigError(f"model.depth: {depth} layers leave {convs} convolution(s) after {fc_layers} FC layer(s){stem}, "
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
    kernel_size: int | list[int] = 3,
    pool: Literal["max", "avg", "none"] = "max",
    norm: Norm = "batch",
    activation: Activation = "relu",
    dropout: Prob = 0.0,
    conv_dropout: Prob = 0.0,
    fc_hidden: list[int] = [],  # noqa: B006
    fc_norm: bool = False,
    global_pool: bool = False,
    stem_channels: Positive | None = None,
    stem_kernel: Positive = 5,
    stem_stride: Positive = 1,
    stem_pool: Literal["max3", "max2", "none"] = "max3",
    bias: Bias = "auto",
    init: Init = "default",
) -> nn.Module:
    """[Stem], stage i: convs_per_stage[i] x (conv kxk -> norm -> activation), pool 2x2, conv-dropout; head.

    convs_per_stage: one number for every stage, or one per stage; 1 when neither it nor depth
      is given.
    depth: total layers with weights (convolutions + FC layers, the ResNet count); the
      convolutions are spread over the stages of `channels`, earlier stages first. With
      channels [64, 128, 256, 512] and fc_hidden [512]: 8, 10, 12 -> [2,2,1,1], [2,2,2,2],
      [3,3,2,2] convs per stage. Give depth or convs_per_stage, not both. A stem's conv counts.
    kernel_size: one size for every stage's convs, or one per stage (padding k // 2).
    stem_channels: a stem before the stages (none by default): conv stem_kernel x stem_kernel
      (stride stem_stride, padding stem_kernel // 2) -> norm -> activation -> stem_pool, where
      max3 is a 3x3 stride-2 max pool with padding 1 (ResNet's) and max2 a 2x2 max pool. The
      stem gets no conv-dropout (that follows each stage). E.g. the Tiny ImageNet write-up's
      "5x5 conv 64; maxpool; then stages of two 3x3 convs + maxpool": stem_channels 64,
      channels [128, 256, 512], convs_per_stage 2.
    global_pool: average-pool the last stage's map to 1x1 before the head.
    Head: [dropout -> FC -> (BN) -> act] for each of fc_hidden, dropout, FC to the classes.
    bias auto: convolutions (and hidden FC layers) that a norm follows have no bias; always
      keeps every bias (nn.Conv2d's and nn.Linear's default, as written-up nets have them).
    """
    if stem_channels is None:
        for key, value, default in (("stem_kernel", stem_kernel, 5), ("stem_stride", stem_stride, 1),
                                    ("stem_pool", stem_pool, "max3")):
            if value != default:
                raise ConfigError(f"model.{key}: set without model.stem_channels, so there is no stem to apply it to; "
                                  f"set model.stem_channels (e.g. 64) or drop model.{key}")
    if depth is not None:
        if convs_per_stage is not None:
            raise ConfigError("model.convs_per_stage: set together with model.depth, which fixes it; give one of the two")
        convs = convs_for_depth(depth, len(channels), len(fc_hidden) + 1, 0 if stem_channels is None else 1)
    else:
        per = 1 if convs_per_stage is None else convs_per_stage
        convs = [per] * len(channels) if isinstance(per, int) else per
    if len(convs) != len(channels):
        raise ConfigError(f"model.convs_per_stage: {len(convs)} entries but model.channels has {len(channels)}")
    kernels = [kernel_size] * len(channels) if isinstance(kernel_size, int) else kernel_size
    if len(kernels) != len(channels):
        raise ConfigError(f"model.kernel_size: {len(kernels)} entries but model.channels has {len(channels)} stages; "
                          "give one kernel size per stage, or one number for all")
    if min(kernels, default=1) < 1:
        raise ConfigError(f"model.kernel_size: {kernel_size} has a size below 1; give kernel sizes of 1 or more, e.g. 3")
    conv_bias = bias == "always" or norm == "none"
    c = in_channels
    stem: list[nn.Module] = []
    if stem_channels is not None:
        stem = [nn.Conv2d(c, stem_channels, stem_kernel, stem_stride, stem_kernel // 2, bias=conv_bias),
                norm2d(norm, stem_channels), make_activation(activation)]
        if stem_pool != "none":
            stem.append(nn.MaxPool2d(3, 2, 1) if stem_pool == "max3" else nn.MaxPool2d(2))
        c = stem_channels
    layers: list[nn.Module] = []
    for width, n, k in zip(channels, convs, kernels):
        for _ in range(n):
            layers += [
                nn.Conv2d(c, width, k, padding=k // 2, bias=conv_bias),
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
    probe = nn.Sequential(*stem, *layers)
    with torch.no_grad():
        flat = probe.eval()(torch.zeros(1, in_channels, *input_size)).numel()
    probe.train()
    features = nn.Sequential(*layers)

    head: list[nn.Module] = [nn.Flatten()]
    width = flat
    for hidden in fc_hidden:
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head += [nn.Linear(width, hidden, bias=bias == "always" or not fc_norm),
                 norm1d("batch" if fc_norm else "none", hidden), make_activation(activation)]
        width = hidden
    if dropout > 0:
        head.append(nn.Dropout(dropout))
    head.append(nn.Linear(width, num_classes))
    parts = [("0", features), ("1", nn.Sequential(*head))]
    if stem:
        # Named, so it reads as the stem in summaries and state_dicts ("stem.0.weight"); the
        # stages and head keep the keys "0." and "1." they have without a stem.
        parts.insert(0, ("stem", nn.Sequential(*stem)))
    model = nn.Sequential(OrderedDict(parts))
    initialize(model, init, activation)
    return model
