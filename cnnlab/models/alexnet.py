"""AlexNet: the 2012 layout (torchvision's single-GPU version) and a 4-block BatchNorm variant."""

from __future__ import annotations

from typing import Literal

from cnnlab.errors import ConfigError
from cnnlab.lazy import lazy
from cnnlab.models.layers import Activation, Init, Norm, Prob, conv_block, fc_stack, initialize
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
    """
    n_convs = 5 if variant == "paper" else 4
    widths = widths or (PAPER_WIDTHS if variant == "paper" else BN4_WIDTHS)
    if len(widths) != n_convs:
        raise ConfigError(f"model.widths: alexnet variant {variant} has {n_convs} convolutions, got {len(widths)} widths")
    norm = norm or ("none" if variant == "paper" else "batch")
    fc_norm = (variant == "bn4") if fc_norm is None else fc_norm
    k, s, p = pick_stem(stem, input_size)
    kernels = [(k, s, p), (5, 1, 2), (3, 1, 1), (3, 1, 1), (3, 1, 1)]

    layers: list[nn.Module] = []
    c = in_channels
    for i, (width, (k, s, p)) in enumerate(zip(widths, kernels)):
        layers += conv_block(c, width, k, s, p, norm, activation)
        if variant == "bn4":
            layers.append(nn.MaxPool2d(2))
        elif i in (0, 1, 4):  # the paper pools after conv 1, 2 and 5 (overlapping 3x3/2)
            layers.append(nn.MaxPool2d(3, 2))
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
    head += fc_stack(flat, fc_hidden, num_classes, activation, "batch" if fc_norm else "none", dropout,
                     dropout_first=variant == "paper")
    model = nn.Sequential(features, nn.Sequential(*head))
    initialize(model, init, activation)
    return model
