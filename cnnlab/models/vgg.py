"""VGG (Simonyan & Zisserman 2014): configurations A/11, 13, 16, 19, with an ImageNet or CIFAR head."""

from __future__ import annotations

from typing import Literal

from cnnlab.errors import ConfigError
from cnnlab.lazy import lazy
from cnnlab.models.layers import Activation, Init, Norm, Prob, conv_block, fc_stack, initialize
from cnnlab.models.registry import CONTEXT, MODELS

nn = lazy("torch.nn")

# Convolutions per stage (3x3, padding 1, each stage ends in a 2x2 max pool), stage widths below.
CONVS = {"A": [1, 1, 2, 2, 2], "11": [1, 1, 2, 2, 2], "13": [2, 2, 2, 2, 2], "16": [2, 2, 3, 3, 3], "19": [2, 2, 4, 4, 4]}
WIDTHS = [64, 128, 256, 512, 512]
HEAD_HIDDEN = {"imagenet": [4096, 4096], "cifar": [512]}


@MODELS.register("vgg", context=CONTEXT)
def vgg(
    in_channels: int,
    num_classes: int,
    input_size: tuple[int, int],
    variant: Literal["A", "11", "13", "16", "19"] = "16",
    norm: Norm = "none",
    head: Literal["auto", "imagenet", "cifar"] = "auto",
    fc_hidden: list[int] | None = None,
    fc_norm: bool = False,
    activation: Activation = "relu",
    dropout: Prob = 0.5,
    widths: list[int] = WIDTHS,  # noqa: B006  (config defaults are read, never mutated)
    init: Init = "default",
) -> nn.Module:
    """VGG-`variant` (A is VGG-11); `norm: batch` is VGG-BN. Five pools: inputs of 32 px or more.

    Convolutions keep their bias even before a norm layer, as torchvision's VGGs do, so that
    VGG-16 with the imagenet head has exactly torchvision.models.vgg16(_bn)'s parameters.
    head imagenet: adaptive average pool to 7x7, then FC -> act -> dropout for each of
      fc_hidden (default 4096, 4096), then the classifier.
    head cifar: global average pool (512 features at 32 px, where the map is already 1x1),
      dropout, then FC -> act -> dropout for each of fc_hidden (default one layer of 512),
      then the classifier: 512 -> 512 -> classes.
    head auto: imagenet from 128 px up (as resnet's stem), cifar below.
    fc_norm puts a BatchNorm1d after each hidden FC layer.
    """
    if head == "auto":
        head = "imagenet" if min(input_size) >= 128 else "cifar"
    if len(widths) != 5:
        raise ConfigError(f"model.widths: VGG has 5 stages, got {len(widths)} widths")
    layers: list[nn.Module] = []
    c = in_channels
    for n, width in zip(CONVS[variant], widths):
        for _ in range(n):
            layers += conv_block(c, width, 3, 1, 1, norm, activation, bias=True)
            c = width
        layers.append(nn.MaxPool2d(2))
    hidden = HEAD_HIDDEN[head] if fc_hidden is None else fc_hidden
    fc_kind: Norm = "batch" if fc_norm else "none"
    if head == "imagenet":
        top: list[nn.Module] = [nn.AdaptiveAvgPool2d(7), nn.Flatten()]
        top += fc_stack(c * 49, hidden, num_classes, activation, fc_kind, dropout)
    else:
        top = [nn.AdaptiveAvgPool2d(1), nn.Flatten()] + ([nn.Dropout(dropout)] if dropout > 0 else [])
        top += fc_stack(c, hidden, num_classes, activation, fc_kind, dropout)
    model = nn.Sequential(nn.Sequential(*layers), nn.Sequential(*top))
    initialize(model, init, activation)
    return model
