"""Any torchvision classification model, as `torchvision:NAME` (random init, our class count)."""

from __future__ import annotations

from typing import Any

from cnnlab.errors import ConfigError, suggest
from cnnlab.lazy import lazy
from cnnlab.models.registry import MODELS

torchvision = lazy("torchvision")
nn = lazy("torch.nn")
blocks = lazy("cnnlab.models.blocks")  # torch classes: imported when a model is built


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
    return model if in_channels == 3 else blocks.ChannelAdapter(in_channels, model)
