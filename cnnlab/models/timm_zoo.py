"""Any timm classifier, as `timm:NAME`, built for the data's classes and channels; `pretrained:`
starts it from timm's weights or a local file (cnnlab/models/pretrained.py loads them when a run
starts, so a reopened run never downloads anything)."""

from __future__ import annotations

from typing import Any, Literal

from cnnlab.errors import ConfigError, suggest
from cnnlab.lazy import lazy
from cnnlab.models.registry import MODELS

nn = lazy("torch.nn")


@MODELS.register("timm:", context=("arch", "in_channels", "num_classes"))
def timm_model(arch: str, in_channels: int, num_classes: int, pretrained: bool | str = False,
               input_size: Literal["weights", "data"] | int = "weights", drop_rate: float = 0.0,
               drop_path_rate: float | None = None, options: dict[str, Any] = {}) -> nn.Module:  # noqa: B006
    """timm.create_model(NAME, num_classes=..., in_chans=...). pretrained: true (timm's default
    weights for NAME, downloaded into the Hugging Face cache), a tag (e.g. a1_in1k) or a weights file
    (.safetensors/.pth/.pt/.bin); the head is new for the data's classes. input_size (with pretrained):
    weights resizes images to the weights' training size and normalises with their mean/std (data.mean/std
    and an op in augment: that sets the size override it); data keeps the data's size; a number resizes
    to it. options: other create_model keyword arguments."""
    try:
        import timm
    except ImportError:
        raise ConfigError("model.name: timm models need the timm package (pip install timm)") from None
    name = arch.split(".", 1)[0]  # a "resnet18.a1_in1k" name: the tag chooses weights, not the network
    if not timm.is_model(name):
        raise ConfigError(f"model.name: timm has no model '{name}'{suggest(name, timm.list_models())}")
    extra = {"drop_path_rate": drop_path_rate} if drop_path_rate is not None else {}
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels,
                                 drop_rate=drop_rate, **extra, **options)
    except TypeError as e:
        raise ConfigError(f"model.options: timm's {name} rejects these options ({e})") from None
