"""Per-parameter learning rates: `optim.lr_mult` (multipliers by name pattern) and
`optim.layer_decay` (timm's layer-wise decay: the head trains at the full rate, each block before
it at `decay` times the rate of the one after). Each group keeps its `lr_mult`; the engine sets
every group's lr to the schedule's lr times it, so every schedule works unchanged."""

from __future__ import annotations

from fnmatch import fnmatch
from typing import Any

from torch import nn

from cnnlab.config import OptimConfig
from cnnlab.errors import ConfigError


def blocks(model: nn.Module) -> list[str]:
    """The model's top-level children that hold trainable parameters, input to output (the
    'layers' of layer-wise decay: the stem, each stage, the head)."""
    return [name for name, child in model.named_children() if any(p.requires_grad for p in child.parameters())]


def multipliers(model: nn.Module, optim: OptimConfig) -> dict[str, float]:
    """name -> lr multiplier of every trainable parameter (1.0 when neither option is set)."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    mult = dict.fromkeys(names, 1.0)
    if optim.layer_decay is not None:
        order = blocks(model)
        depth = {b: len(order) - 1 - i for i, b in enumerate(order)}  # the head: 0
        for n in names:
            top = n.split(".", 1)[0]
            mult[n] = optim.layer_decay ** depth.get(top, 0)
    for pattern, factor in optim.lr_mult.items():
        hits = [n for n in names if fnmatch(n, pattern)]
        if not hits:
            raise ConfigError(f"optim.lr_mult: '{pattern}' matches no parameter of this model; its parameters are "
                              f"named like {', '.join(names[:4])}, ...")
        for n in hits:
            mult[n] *= factor
    return mult


def param_groups(model: nn.Module, optim: OptimConfig) -> Any:
    """What the optimizer is given: the parameters as before when no multiplier is set (the same
    optimizer, bit for bit), else one group per distinct multiplier."""
    if not optim.lr_mult and optim.layer_decay is None:
        return model.parameters()
    mult = multipliers(model, optim)
    params = dict(model.named_parameters())
    groups: dict[float, list[Any]] = {}
    for n, m in mult.items():
        groups.setdefault(m, []).append(params[n])
    return [{"params": ps, "lr_mult": m} for m, ps in sorted(groups.items(), key=lambda kv: kv[0])]


def describe(model: nn.Module, optim: OptimConfig) -> str | None:
    """One line for the banner: the multipliers in use, or None."""
    if not optim.lr_mult and optim.layer_decay is None:
        return None
    mult = multipliers(model, optim)
    spread = sorted(set(mult.values()))
    return (f"per-parameter lr: x{spread[0]:.3g} to x{spread[-1]:.3g} over {len(spread)} group(s)"
            + (f" (layer decay {optim.layer_decay:g} over {len(blocks(model))} blocks)" if optim.layer_decay else "")
            + (f"; lr_mult {dict(optim.lr_mult)}" if optim.lr_mult else ""))
