"""Models: one builder per family, registered under the name used in `model.name`.

Builders receive `in_channels`, `num_classes` and `input_size` from the data, and their
own options from the `model:` section (see registry.py). The family modules import torch
lazily, so importing this package to check a config does not import it.
"""

from __future__ import annotations

from typing import Any

from cnnlab.errors import ConfigError, UserError
from cnnlab.lazy import lazy
from cnnlab.models import alexnet, cnn, lenet, resnet, small_vgg, timm_zoo, tv, vgg  # noqa: F401  (registers the families)
from cnnlab.models.registry import CONTEXT, MODELS
from cnnlab.usercode.blame import add_code_of, blame
from cnnlab.usercode.imports import short

torch = lazy("torch")

__all__ = ["CONTEXT", "MODELS", "build_model", "count_parameters"]


def build_model(model: Any, input_shape: tuple[int, int, int], num_classes: int) -> torch.nn.Module:
    """Build the model a `model:` section (or mapping with its name) describes for this data,
    and check that it accepts an input of that shape and returns (N, num_classes) logits.
    A user's own model (nets.py:TinyVGG) gets the same context by parameter name, and a failure
    inside it shows their traceback."""
    c, h, w = input_shape
    name = model["name"] if isinstance(model, dict) else model.name
    label = f"'{short(name)}'"
    user = MODELS.get(str(name)).origin is not None
    try:
        # (built-in builders size their layers with a forward pass: their errors are caught here too)
        net = MODELS.build(model, in_channels=c, num_classes=num_classes, input_size=(h, w), input_shape=(c, h, w))
        if not isinstance(net, torch.nn.Module):
            raise ConfigError(f"model.name: {label} returned a {type(net).__name__}, not a torch.nn.Module")
        if user:
            add_code_of(net)
        net.eval()
        with torch.no_grad():
            out = net(torch.zeros(2, c, h, w))
    except UserError:
        raise
    except Exception as e:
        err = blame(e, f"model.name: {label} failed on a batch of 2 {c}x{h}x{w} images") if user else None
        if err is not None:
            raise err from None
        if not isinstance(e, RuntimeError):
            raise
        reason = str(e).splitlines()[0]
        raise ConfigError(
            f"model.name: {label} cannot take {c}x{h}x{w} images ({reason}); "
            "choose a model or options that suit this input size"
        ) from None
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"model.name: {label} returned a {type(out).__name__} from forward(); cnnlab needs one tensor "
                          f"of logits, shape (N, {num_classes})")
    if tuple(out.shape) != (2, num_classes):
        hint = (f"; its last layer must give num_classes={num_classes} outputs (cnnlab passes num_classes to an "
                "__init__ that takes it)") if user else ""
        raise ConfigError(f"model.name: {label} returned shape {tuple(out.shape)} for 2 images, expected "
                          f"(N, {num_classes}) = (2, {num_classes}){hint}")
    net.train()
    return net


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
