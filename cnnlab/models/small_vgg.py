"""Small VGG-style nets for CIFAR-sized images: two-conv (or N-conv) stages, then a two-hidden-layer MLP."""

from __future__ import annotations

from cnnlab.errors import ConfigError
from cnnlab.lazy import lazy
from cnnlab.models.layers import (
    Activation,
    Bias,
    Init,
    Positive,
    Prob,
    conv_block,
    fc_stack,
    initialize,
)
from cnnlab.models.registry import CONTEXT, MODELS

torch = lazy("torch")
nn = lazy("torch.nn")


@MODELS.register("small_vgg", context=CONTEXT)
def small_vgg(
    in_channels: int,
    num_classes: int,
    input_size: tuple[int, int],
    hidden_channels: list[int] = [16, 32],  # noqa: B006  (config defaults are read, never mutated)
    hidden_neurons: list[int] = [128, 128],  # noqa: B006
    convs_per_stage: Positive = 2,
    conv_bn: bool = False,
    fc_bn: bool = False,
    activation: Activation = "relu",
    dropout: Prob = 0.0,
    conv_dropout: Prob = 0.0,
    bias: Bias = "auto",
    init: Init = "default",
) -> nn.Module:
    """Per stage c: conv3x3 c -> [BN] -> act -> conv3x3 c -> [BN] -> act -> 2x2 max pool; then FCs.

    With hidden_channels [c1, c2] and hidden_neurons [n1, n2] on HxW images the layers are:
      conv(C->c1), conv(c1->c1), pool, conv(c1->c2), conv(c2->c2), pool   (3x3, padding 1)
      [Dropout2d(conv_dropout) after each pool], flatten (c2 * H/4 * W/4 features),
      FC n1 -> [BN1d] -> act -> [dropout], FC n2 -> [BN1d] -> act -> [dropout], FC classes.
    Layers followed by BN have no bias (BN's shift replaces it) unless bias is always, which
    keeps every bias (as nets written with nn.Conv2d/nn.Linear defaults have). More or fewer
    stages and hidden layers follow the same pattern; convs_per_stage sets the convs of each
    stage (1 gives the CIFAR-10 write-up's conv -> act -> pool stages: with the defaults
    [16, 32] / [128, 128] and 10 classes, 285,162 parameters; 285,770 with conv_bn, fc_bn
    and bias always).
    """
    if not hidden_channels:
        raise ConfigError("model.hidden_channels: give at least one stage width, e.g. [16, 32]")
    layers: list[nn.Module] = []
    c = in_channels
    norm = "batch" if conv_bn else "none"
    conv_bias = True if bias == "always" else None
    for width in hidden_channels:
        for i in range(convs_per_stage):
            layers += conv_block(c if i == 0 else width, width, 3, 1, 1, norm, activation, conv_bias)
        layers.append(nn.MaxPool2d(2))
        if conv_dropout > 0:
            layers.append(nn.Dropout2d(conv_dropout))
        c = width
    features = nn.Sequential(*layers)
    with torch.no_grad():
        flat = features.eval()(torch.zeros(1, in_channels, *input_size)).numel()
    features.train()
    head = [nn.Flatten()] + fc_stack(flat, hidden_neurons, num_classes, activation, "batch" if fc_bn else "none", dropout,
                                       bias=bias)
    model = nn.Sequential(features, nn.Sequential(*head))
    initialize(model, init, activation)
    return model
