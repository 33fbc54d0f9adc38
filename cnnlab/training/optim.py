"""Optimizers, registered under the name used in `optim.name`; `optim.lr` is common to all.

Builders get `params` (what to optimise) and `lr` as context. torch is imported lazily
(cnnlab/lazy.py) so a config is checked without it."""

from __future__ import annotations

from collections.abc import Iterable

from cnnlab.errors import ConfigError
from cnnlab.lazy import lazy
from cnnlab.registry import Registry

torch = lazy("torch")

OPTIMIZERS = Registry("optimizer", "optim", context=("params", "lr"))
CONTEXT = ("params", "lr")


@OPTIMIZERS.register("sgd", context=CONTEXT)
def sgd(params: Iterable, lr: float, momentum: float = 0.0, nesterov: bool = False,
        weight_decay: float = 0.0, dampening: float = 0.0) -> torch.optim.Optimizer:
    """Stochastic gradient descent, optionally with (Nesterov) momentum and weight decay."""
    if nesterov and momentum <= 0:
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


@OPTIMIZERS.register("adagrad", context=CONTEXT)
def adagrad(params: Iterable, lr: float, lr_decay: float = 0.0, weight_decay: float = 0.0,
            initial_accumulator_value: float = 0.0, eps: float = 1e-10) -> torch.optim.Optimizer:
    """Adagrad: per-parameter steps scaled by the root of the summed squared gradients."""
    return torch.optim.Adagrad(params, lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                               initial_accumulator_value=initial_accumulator_value, eps=eps)


@OPTIMIZERS.register("rmsprop", context=CONTEXT)
def rmsprop(params: Iterable, lr: float, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
            momentum: float = 0.0, centered: bool = False) -> torch.optim.Optimizer:
    """RMSprop: steps scaled by a moving average (decay alpha) of squared gradients."""
    return torch.optim.RMSprop(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                               momentum=momentum, centered=centered)
