"""Which parameters train.freeze holds fixed (the callback is cnnlab/training/freeze.py); here, below
training, so `cnnlab model summary` can say it too."""

from __future__ import annotations

import re

from cnnlab.errors import ConfigError
from cnnlab.lazy import lazy

nn = lazy("torch.nn")


def head_parameters(model: nn.Module, key: str) -> list[str]:
    """The names of the head's parameters: those of the last nn.Linear layer (`key`: the config key
    its error names)."""
    linear = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linear:
        raise ConfigError(f"{key}: the head means the last nn.Linear layer, and this model has none")
    return [f"{linear[-1]}.{n}" if linear[-1] else n for n, _ in model.get_submodule(linear[-1]).named_parameters()]


def frozen_names(model: nn.Module, until: str) -> list[str]:
    """The parameters frozen: all before the head's (the last Linear layer), or before the first
    parameter whose name starts with `until`."""
    names = [n for n, _ in model.named_parameters()]
    stage = re.fullmatch(r"stage(\d+)", until)
    if stage is not None:
        return _through_stage(model, names, int(stage.group(1)))
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


def _through_stage(model: nn.Module, names: list[str], n: int) -> list[str]:
    """Parameters of timm feature_info stages 0..n (and everything before them in the network)."""
    info = getattr(model, "feature_info", None)
    if not isinstance(info, list) or not info:
        raise ConfigError(f"train.freeze.until: stage{n} names a timm feature_info stage and this model has none; "
                          "name the first layer to train instead")
    if n >= len(info) - 1:
        raise ConfigError(f"train.freeze.until: stage{n}: this model's stages are stage0..stage{len(info) - 1}, and "
                          f"freezing through the last leaves only the head; use until: head")
    last = info[n]["module"]
    modules = [name for name, _ in model.named_modules()]
    if last not in modules:
        raise ConfigError(f"train.freeze.until: stage{n}'s module '{last}' is not in the model")
    # Every parameter up to and including stage n's module, in the order the network holds them.
    end = max((i for i, p in enumerate(names) if any(p.startswith(m + ".") for m in modules[: modules.index(last) + 1]
                                                      if m)), default=-1)
    if end < 0:
        raise ConfigError(f"train.freeze.until: stage{n} holds no parameters; choose a later stage")
    return names[: end + 1]
