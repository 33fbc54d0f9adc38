"""Optimizers, registered under the name used in `optim.name`; `optim.lr` is common to all."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from cnnlab.registry import Registry

OPTIMIZERS = Registry("optimizer", "optim.name")
CONTEXT = ("params", "lr")


@OPTIMIZERS.register("sgd", context=CONTEXT)
def sgd(params: Iterable, lr: float, momentum: float = 0.0, nesterov: bool = False,
        weight_decay: float = 0.0, dampening: float = 0.0) -> torch.optim.Optimizer:
    """Stochastic gradient descent, optionally with (Nesterov) momentum and weight decay."""
    if nesterov and momentum <= 0:
        from cnnlab.errors import ConfigError

        raise ConfigError("optim.nesterov: Nesterov momentum needs optim.momentum > 0")
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov,
                           weight_decay=weight_decay, dampening=dampening)


@OPTIMIZERS.register("adam", context=CONTEXT)
def adam(params: Iterable, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
         weight_decay: float = 0.0, amsgrad: bool = False) -> torch.optim.Optimizer:
    """Adam (weight decay added to the gradient, as in the original paper)."""
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)


@OPTIMIZERS.register("adamw", context=CONTEXT)
def adamw(params: Iterable, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
          weight_decay: float = 0.01, amsgrad: bool = False) -> torch.optim.Optimizer:
    """AdamW: Adam with decoupled weight decay."""
    return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
