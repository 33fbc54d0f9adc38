"""Models: one builder per family, registered under the name used in `model.name`.

Builders receive `in_channels`, `num_classes` and `input_size` from the data, and their
own options from the `model:` section.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.registry import Registry

MODELS = Registry("model", "model.name")
CONTEXT = ("in_channels", "num_classes", "input_size")

from cnnlab.models import alexnet, cnn, lenet, resnet, small_vgg, tv, vgg  # noqa: E402,F401  (registers the families)


def build_model(name: str, options: dict, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Build the named model for this data, and check that it accepts an input of that shape."""
    c, h, w = input_shape
    try:
        model = MODELS.build(name, options, in_channels=c, num_classes=num_classes, input_size=(h, w))
        model.eval()
        with torch.no_grad():
            out = model(torch.zeros(2, c, h, w))
    except RuntimeError as e:
        reason = str(e).splitlines()[0]
        raise ConfigError(
            f"model.name: '{name}' cannot take {c}x{h}x{w} images ({reason}); "
            "choose a model or options that suit this input size"
        ) from None
    if tuple(out.shape) != (2, num_classes):
        raise ConfigError(f"model.name: '{name}' returned shape {tuple(out.shape)}, expected (N, {num_classes})")
    model.train()
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
