"""Which parameters train.freeze holds fixed (the callback is cnnlab/training/freeze.py); here, below
training, so `cnnlab model summary` can say it too."""

from __future__ import annotations

from cnnlab.errors import ConfigError
from cnnlab.lazy import lazy

nn = lazy("torch.nn")


def frozen_names(model: nn.Module, until: str) -> list[str]:
    """The parameters frozen: all before the head's (the last Linear layer), or before the first
    parameter whose name starts with `until`."""
    names = [n for n, _ in model.named_parameters()]
    if until == "head":
        linear = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
        if not linear:
            raise ConfigError("train.freeze.until: head means the last nn.Linear layer, and this model has none; "
                              "name the first layer to train instead")
        until = linear[-1]
    first = next((i for i, n in enumerate(names) if n == until or n.startswith(until + ".")), None)
    if first is None:
        tops = list(dict.fromkeys(n.split(".", 1)[0] for n in names))
        raise ConfigError(f"train.freeze.until: '{until}' names no layer of this model; its top-level layers are "
                          f"{', '.join(tops)}")
    if first == 0:
        raise ConfigError(f"train.freeze.until: '{until}' is the first layer: nothing would be frozen")
    return names[:first]
