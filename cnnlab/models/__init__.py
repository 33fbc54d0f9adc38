"""Models: one builder per family, registered under the name used in `model.name`.

Builders receive `in_channels`, `num_classes` and `input_size` from the data, and their
own options from the `model:` section (see registry.py). The family modules import torch
lazily, so importing this package to check a config does not import it.
"""

from __future__ import annotations

from typing import Any

from cnnlab.errors import ConfigError
from cnnlab.lazy import lazy
from cnnlab.models import alexnet, cnn, lenet, resnet, small_vgg, tv, vgg  # noqa: F401  (registers the families)
from cnnlab.models.registry import CONTEXT, MODELS

torch = lazy("torch")

__all__ = ["CONTEXT", "MODELS", "build_model", "count_parameters"]


def build_model(model: Any, input_shape: tuple[int, int, int], num_classes: int) -> torch.nn.Module:
    """Build the model a `model:` section (or mapping with its name) describes for this data,
    and check that it accepts an input of that shape."""
    c, h, w = input_shape
    name = model["name"] if isinstance(model, dict) else model.name
    try:
        net = MODELS.build(model, in_channels=c, num_classes=num_classes, input_size=(h, w))
        net.eval()
        with torch.no_grad():
            out = net(torch.zeros(2, c, h, w))
    except RuntimeError as e:
        reason = str(e).splitlines()[0]
        raise ConfigError(
            f"model.name: '{name}' cannot take {c}x{h}x{w} images ({reason}); "
            "choose a model or options that suit this input size"
        ) from None
    if tuple(out.shape) != (2, num_classes):
        raise ConfigError(f"model.name: '{name}' returned shape {tuple(out.shape)}, expected (N, {num_classes})")
    net.train()
    return net


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
