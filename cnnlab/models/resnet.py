"""ResNets: basic and bottleneck blocks, depth presets (ImageNet, CIFAR, small), a stem for the input size.

Depth counts the layers with weights on the longest path: stem convolutions + the convolutions
of every block (2 per basic block, 3 per bottleneck) + the FC layer; 1x1 shortcut projections
are not counted. So ResNet-18 = 1 + 2*8 + 1, ResNet-50 = 1 + 3*16 + 1, CIFAR ResNet-20 =
1 + 2*9 + 1, and the small presets 11/15/19 use a two-conv stem: 2 + 2*4 + 1, 2 + 2*6 + 1,
2 + 2*8 + 1. `cnn`'s depth option counts the same way, so plain and residual nets compare.

The Tiny ImageNet write-up's "ResNet-11" is not the preset 11: a 5x5 stride-1 stem conv (64) +
BN + ReLU + 3x3/2 max pool, then basic blocks [1, 2, 2] at widths [64, 128, 256], every block
with a 1x1-conv + BN shortcut, convs with biases, its own dropout placement; its 11 counts the
convolutions only (1 + 2*5; 12 layers with weights by the count above). Its deeper levels are
our choice: 15 = blocks [1, 3, 3], 19 = blocks [1, 4, 4] (the added blocks go to the two
strided stages, 1 + 2*7 and 1 + 2*9 convolutions). They are built with the options stem: small,
stem_kernel: 5, stem_pool: max3, shortcut: projection, bias: always, block_dropout_at:
after_conv1_and_sum, stem_dropout (docs/models.md).
"""

from __future__ import annotations

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
    conv_block,
    initialize,
    make_activation,
    norm2d,
)
from cnnlab.models.registry import CONTEXT, MODELS

nn = lazy("torch.nn")
residual = lazy("cnnlab.models.blocks")  # torch classes: imported when a ResNet is built

IMAGENET_WIDTHS = [64, 128, 256, 512]
CIFAR_WIDTHS = [16, 32, 64]
# depth -> (blocks per stage, block kind, stage widths, stem convolutions)
PRESETS: dict[int, tuple[list[int], str, list[int], int]] = {
    11: ([1, 1, 1, 1], "basic", IMAGENET_WIDTHS, 2),
    15: ([2, 2, 1, 1], "basic", IMAGENET_WIDTHS, 2),
    19: ([2, 2, 2, 2], "basic", IMAGENET_WIDTHS, 2),
    18: ([2, 2, 2, 2], "basic", IMAGENET_WIDTHS, 1),
    34: ([3, 4, 6, 3], "basic", IMAGENET_WIDTHS, 1),
    50: ([3, 4, 6, 3], "bottleneck", IMAGENET_WIDTHS, 1),
    101: ([3, 4, 23, 3], "bottleneck", IMAGENET_WIDTHS, 1),
    152: ([3, 8, 36, 3], "bottleneck", IMAGENET_WIDTHS, 1),
    # He et al. 2015, section 4.2: 3 stages of n = (depth - 2) / 6 basic blocks at 16/32/64.
    **{d: ([(d - 2) // 6] * 3, "basic", CIFAR_WIDTHS, 1) for d in (20, 32, 44, 56, 110)},
}


@MODELS.register("resnet", context=CONTEXT)
def resnet(
    in_channels: int,
    num_classes: int,
    input_size: tuple[int, int],
    depth: int | None = None,
    blocks: list[int] | None = None,
    widths: list[int] | None = None,
    block: Literal["auto", "basic", "bottleneck"] = "auto",
    stem: Literal["auto", "small", "imagenet"] = "auto",
    stem_convs: Annotated[int, Field(ge=1)] | None = None,
    stem_kernel: Positive | None = None,
    stem_stride: Positive | None = None,
    stem_pool: Literal["auto", "max3", "none"] = "auto",
    stem_dropout: Prob = 0.0,
    shortcut: Literal["auto", "projection"] = "auto",
    bias: Bias = "auto",
    norm: Norm = "batch",
    activation: Activation = "relu",
    dropout: Prob = 0.0,
    block_dropout: Prob = 0.0,
    block_dropout_at: Literal["after_act1", "after_conv1_and_sum"] = "after_act1",
    init: Init = "kaiming",
    zero_init_residual: bool = True,
) -> nn.Module:
    """Stem, then stage i of blocks[i] blocks at widths[i] (stride 2 from the second stage), pool, FC.

    depth: a preset (see the module docstring): 11, 15, 19 (two-conv stem, widths 64..512),
      18, 34 (basic), 50, 101, 152 (bottleneck), 20, 32, 44, 56, 110 (CIFAR: 3 stages at
      16/32/64). Give either depth or blocks; widths may replace a preset's widths.
    Without either: blocks [2, 2, 2, 2] of basic blocks at 64/128/256/512 (the ResNet-18 layout);
      explicit blocks without widths take 64, 128, 256, 512 (cut or extended with 512).
    block auto: the preset's kind, basic for explicit blocks.
    stem: the first conv; imagenet = 7x7 stride 2 + 3x3/2 max pool, small = 3x3 stride 1;
      auto picks imagenet from 128 px up. stem_convs > 1 adds 3x3 convs after it.
    stem_kernel, stem_stride: replace the chosen stem's first conv's (padding kernel // 2);
      stem_pool: max3 (3x3 stride 2, padding 1) or none instead of the stem's own (auto).
    stem_dropout: nn.Dropout right after the stem's first conv, before its norm.
    shortcut auto: identity where a block keeps the shape, else 1x1 conv + norm; projection:
      the 1x1 conv + norm on every block.
    bias auto: convs have a bias only without a norm; always: every conv keeps it.
    dropout comes before the FC layer; block_dropout inside each block, where
      block_dropout_at says: after_act1 (Dropout2d after the first conv's activation), or
      after_conv1_and_sum (nn.Dropout right after the first conv and again on the residual
      sum before the last activation: x = act(bn1(drop(conv1(in)))); x = bn2(conv2(x)) +
      shortcut(in); out = act(drop(x))).
    """
    if block_dropout_at != "after_act1" and block_dropout == 0:
        raise ConfigError(f"model.block_dropout_at: {block_dropout_at} places a dropout of 0 (model.block_dropout); "
                          "set model.block_dropout (e.g. 0.2) or drop model.block_dropout_at")
    if depth is not None:
        if depth not in PRESETS:
            raise ConfigError(f"model.depth: no ResNet preset of depth {depth}; choose one of "
                              f"{', '.join(map(str, sorted(PRESETS)))}, or give model.blocks instead")
        for key, value in (("blocks", blocks), ("stem_convs", stem_convs)):
            if value is not None:
                raise ConfigError(f"model.{key}: set together with model.depth, which fixes it; give one of the two")
        blocks, kind, preset_widths, stem_convs = PRESETS[depth]
        if block not in ("auto", kind):
            raise ConfigError(f"model.block: ResNet-{depth} is made of {kind} blocks, not {block}; "
                              "drop model.block or give model.blocks instead of model.depth")
        widths = widths or preset_widths
        block = kind  # type: ignore[assignment]
    blocks = blocks or [2, 2, 2, 2]
    widths = widths or IMAGENET_WIDTHS[: len(blocks)] + [512] * max(0, len(blocks) - 4)
    stem_convs = stem_convs or 1
    block_cls = residual.BLOCKS["basic" if block == "auto" else block]
    if len(blocks) != len(widths):
        if depth is not None:
            raise ConfigError(f"model.widths: ResNet-{depth} has {len(blocks)} stages, got {len(widths)} widths")
        raise ConfigError(f"model.blocks: {len(blocks)} stages but model.widths has {len(widths)}")
    if stem == "auto":
        # Small images (28-64 px) lose too much to a 7x7/2 conv + max pool; 224 px inputs need it.
        stem = "imagenet" if min(input_size) >= 128 else "small"
    conv_bias = bias == "always" or norm == "none"
    k, s = (3, 1) if stem == "small" else (7, 2)
    k, s = stem_kernel or k, stem_stride or s
    layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], k, s, k // 2, bias=conv_bias)]
    if stem_dropout > 0:
        layers.append(nn.Dropout(stem_dropout))
    layers += [norm2d(norm, widths[0]), make_activation(activation)]
    for _ in range(stem_convs - 1):
        layers += conv_block(widths[0], widths[0], 3, 1, 1, norm, activation, bias=conv_bias)
    if stem_pool == "max3" or (stem_pool == "auto" and stem == "imagenet"):
        layers.append(nn.MaxPool2d(3, 2, 1))
    c = widths[0]
    for i, (n, width) in enumerate(zip(blocks, widths)):
        for j in range(n):
            stride = 2 if (i > 0 and j == 0) else 1
            layers.append(block_cls(c, width, stride, norm, activation, block_dropout, block_dropout_at,
                                    shortcut == "projection", conv_bias))
            c = width * block_cls.expansion
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(c, num_classes))
    model = nn.Sequential(*layers)
    initialize(model, init, activation)
    if zero_init_residual and norm in ("batch", "group", "layer"):
        # Each block starts as the identity: helps deep nets train from the first step.
        for m in model.modules():
            if isinstance(m, tuple(residual.BLOCKS.values())):
                nn.init.zeros_(m.last_norm().weight)
    return model
