"""Any torchvision classification model, as `torchvision:NAME` (random init, our class count)."""

from __future__ import annotations

from typing import Any

import torch
import torchvision
from torch import nn

from cnnlab.errors import ConfigError, suggest
from cnnlab.models import MODELS


class ChannelAdapter(nn.Module):
    """Feeds grayscale (or other channel counts) to a model built for RGB."""

    def __init__(self, in_channels: int, model: nn.Module):
        super().__init__()
        self.in_channels = in_channels
        self.proj = None if in_channels == 1 else nn.Conv2d(in_channels, 3, 1)
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.expand(-1, 3, -1, -1) if self.proj is None else self.proj(x)
        return self.model(x)


@MODELS.register("torchvision:", context=("arch", "in_channels", "num_classes"))
def torchvision_model(arch: str, in_channels: int, num_classes: int, options: dict[str, Any] = {}) -> nn.Module:  # noqa: B006
    """torchvision.models.get_model(arch, weights=None, num_classes=...), options passed through."""
    names = torchvision.models.list_models(module=torchvision.models)
    if arch not in names:
        raise ConfigError(f"model.name: torchvision has no classification model '{arch}'{suggest(arch, names)}")
    try:
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **options)
    except TypeError as e:
        raise ConfigError(f"model.options: {arch} rejects these options ({e})") from None
    return model if in_channels == 3 else ChannelAdapter(in_channels, model)
