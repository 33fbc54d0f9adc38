"""AlexNet: the 2012 layout (torchvision's single-GPU version) and a 4-block BatchNorm variant."""

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
    fc_stack,
    initialize,
    make_activation,
    norm2d,
)
from cnnlab.models.registry import CONTEXT, MODELS

torch = lazy("torch")
nn = lazy("torch.nn")

Stem = Literal["auto", "imagenet", "medium", "small"]
# First convolution (kernel, stride, padding) per stem. "imagenet" is the paper's 11x11/4;
# smaller images would be shrunk to a few pixels by it before the later convs see them.
STEMS = {"imagenet": (11, 4, 2), "medium": (7, 2, 3), "small": (3, 1, 1)}

PAPER_WIDTHS = [64, 192, 384, 256, 256]  # torchvision's (Krizhevsky 2014, "one weird trick")
BN4_WIDTHS = [64, 128, 256, 256]


def pick_stem(stem: Stem, input_size: tuple[int, int]) -> tuple[int, int, int]:
    """The stem for the input size: 11x11/4 from 192 px, 7x7/2 from 96 px, else 3x3/1."""
    if stem == "auto":
        side = min(input_size)
        stem = "imagenet" if side >= 192 else "medium" if side >= 96 else "small"
    return STEMS[stem]


@MODELS.register("alexnet", context=CONTEXT)
def alexnet(
    in_channels: int,
    num_classes: int,
    input_size: tuple[int, int],
    variant: Literal["paper", "bn4"] = "paper",
    widths: list[int] | None = None,
    fc_hidden: list[int] = [4096, 4096],  # noqa: B006  (config defaults are read, never mutated)
    stem: Stem = "auto",
    norm: Norm | None = None,
    fc_norm: bool | None = None,
    activation: Activation = "relu",
    dropout: Prob = 0.5,
    input_norm: bool = False,
    block_order: Literal["conv_norm_act_pool", "conv_act_pool_norm"] = "conv_norm_act_pool",
    kernels: list[Positive] | None = None,
    stem_kernel: Positive | None = None,
    stem_stride: Positive | None = None,
    stem_padding: Annotated[int, Field(ge=0)] | None = None,
    bias: Bias = "auto",
    fc_activation: bool = True,
    dropout_at: Literal["hidden", "logits"] = "hidden",
    init: Init = "default",
) -> nn.Module:
    """AlexNet sized for the input; `variant: paper` matches torchvision.models.alexnet exactly at 224 px.

    paper: 5 convs (widths, default 64/192/384/256/256): stem conv, 3x3/2 max pool, 5x5 conv,
      max pool, three 3x3 convs, max pool; adaptive average pool to 6x6 (or to the map's own
      size when it is smaller, so small inputs do not feed copies of pixels to the FC layer);
      then dropout -> FC -> act for each of fc_hidden, and the classifier.
    bn4: 4 blocks of conv -> norm -> act -> 2x2 max pool (widths, default 64/128/256/256; the
      stem conv, then 5x5, 3x3, 3x3), flatten, then FC -> norm -> act -> dropout for each of
      fc_hidden, and the classifier (3 FC layers with the default fc_hidden).
    stem: the first conv by input size (auto): 11x11 stride 4 from 192 px (the paper), 7x7
      stride 2 from 96 px, 3x3 stride 1 below.
    norm (conv blocks) and fc_norm (hidden FC layers) default to the variant's own: none and
      off for paper, batch and on for bn4.
    stem_kernel, stem_stride, stem_padding: replace the stem's (the padding becomes
      stem_kernel // 2 when only the kernel is given). kernels: the kernel sizes of the convs
      after the stem (stride 1, padding k // 2), one each.
    input_norm: a BatchNorm2d over the input image's channels before the first conv.
    block_order conv_act_pool_norm: each block is conv -> act -> [pool] -> norm instead of
      conv -> norm -> act -> [pool]; such a conv keeps its bias (no norm follows it directly).
    bias auto: a conv or FC layer directly followed by a norm has no bias; always keeps all.
    fc_activation false: no activation between the FC layers (they compose linearly, as in
      the faces write-up's net). dropout_at logits: one Dropout on the classifier's output
      instead of one per hidden FC layer.
    The faces write-up's net (224 px, 500 classes) is variant bn4, widths [96, 256, 384, 512],
    input_norm, block_order conv_act_pool_norm, stem 7/2/1, kernels [3, 3, 3], fc_hidden
    [2048, 2048] without norm or activation, dropout 0.5 at the logits (docs/models.md).
    """
    n_convs = 5 if variant == "paper" else 4
    widths = widths or (PAPER_WIDTHS if variant == "paper" else BN4_WIDTHS)
    if len(widths) != n_convs:
        raise ConfigError(f"model.widths: alexnet variant {variant} has {n_convs} convolutions, got {len(widths)} widths")
    norm = norm or ("none" if variant == "paper" else "batch")
    fc_norm = (variant == "bn4") if fc_norm is None else fc_norm
    if dropout_at == "logits" and dropout == 0:
        raise ConfigError("model.dropout_at: logits places a dropout of 0 (model.dropout); "
                          "set model.dropout (e.g. 0.5) or drop model.dropout_at")
    k, s, p = pick_stem(stem, input_size)
    if stem_kernel is not None:
        k, p = stem_kernel, stem_kernel // 2
    s = stem_stride or s
    p = p if stem_padding is None else stem_padding
    after = [5, 3, 3, 3][: n_convs - 1] if kernels is None else kernels
    if len(after) != n_convs - 1:
        raise ConfigError(f"model.kernels: {len(after)} entries, but alexnet variant {variant} has {n_convs - 1} "
                          "convolutions after the stem; give one kernel size each (the stem's is model.stem_kernel)")
    convs = [(k, s, p)] + [(k, 1, k // 2) for k in after]

    layers: list[nn.Module] = [nn.BatchNorm2d(in_channels)] if input_norm else []
    c = in_channels
    for i, (width, (k, s, p)) in enumerate(zip(widths, convs)):
        norm_layer = norm2d(norm, width)
        # A conv directly followed by a norm has no bias (the norm's shift cancels it), unless kept.
        direct = block_order == "conv_norm_act_pool" and not isinstance(norm_layer, nn.Identity)
        conv = nn.Conv2d(c, width, k, s, p, bias=bias == "always" or not direct)
        if variant == "bn4":
            pool: nn.Module | None = nn.MaxPool2d(2)
        elif i in (0, 1, 4):  # the paper pools after conv 1, 2 and 5 (overlapping 3x3/2)
            pool = nn.MaxPool2d(3, 2)
        else:
            pool = None
        if block_order == "conv_norm_act_pool":
            block = [conv, norm_layer, make_activation(activation), pool]
        else:
            block = [conv, make_activation(activation), pool, norm_layer]
        layers += [m for m in block if m is not None]
        c = width
    features = nn.Sequential(*layers)
    with torch.no_grad():
        fmap = features.eval()(torch.zeros(1, in_channels, *input_size)).shape[-2:]
    features.train()
    if variant == "paper":
        pool = (min(6, fmap[0]), min(6, fmap[1]))
        head: list[nn.Module] = [nn.AdaptiveAvgPool2d(pool), nn.Flatten()]
        flat = c * pool[0] * pool[1]
    else:
        head, flat = [nn.Flatten()], c * fmap[0] * fmap[1]
    head += fc_stack(flat, fc_hidden, num_classes, activation, "batch" if fc_norm else "none",
                     dropout if dropout_at == "hidden" else 0.0, dropout_first=variant == "paper", bias=bias,
                     activate=fc_activation)
    if dropout_at == "logits":
        head.append(nn.Dropout(dropout))
    model = nn.Sequential(features, nn.Sequential(*head))
    initialize(model, init, activation)
    return model
