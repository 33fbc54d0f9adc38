"""Any torchvision classification model, as `torchvision:NAME`, for the data's classes: random
weights, or with `weights:` torchvision's pretrained ones (loaded when a run starts by
cnnlab/models/pretrained.py; the last layer stays new for the data's classes)."""

from __future__ import annotations

from typing import Any, Literal

from cnnlab.errors import ConfigError, suggest
from cnnlab.lazy import lazy
from cnnlab.models.registry import MODELS

torchvision = lazy("torchvision")
nn = lazy("torch.nn")
blocks = lazy("cnnlab.models.blocks")  # torch classes: imported when a model is built


@MODELS.register("torchvision:", context=("arch", "in_channels", "num_classes"))
def torchvision_model(arch: str, in_channels: int, num_classes: int, weights: bool | str | None = None,
                      input_size: Literal["weights", "data"] | int = "weights",
                      options: dict[str, Any] = {}) -> nn.Module:  # noqa: B006
    """torchvision.models.get_model(arch, num_classes=...), options passed through. weights: true
    (the DEFAULT weights, downloaded into torch.hub's cache), a weight name (IMAGENET1K_V1) or a
    file (.pth/.pt/.bin/.safetensors); every tensor but the last layer's is loaded. input_size (with
    weights): weights resizes images to the weights' crop size and normalises with their mean/std
    (data.mean/std and an op in augment: that sets the size override it); data keeps the data's size;
    a number resizes to it. Grayscale input is repeated over the three channels the net expects."""
    names = torchvision.models.list_models(module=torchvision.models)
    if arch not in names:
        raise ConfigError(f"model.name: torchvision has no classification model '{arch}'{suggest(arch, names)}")
    try:
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **options)
    except TypeError as e:
        raise ConfigError(f"model.options: {arch} rejects these options ({e})") from None
    return model if in_channels == 3 else blocks.ChannelAdapter(in_channels, model)
