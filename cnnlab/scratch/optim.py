"""SGD and Adam with torch.optim's exact update rules (single parameter group)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from .layers.base import Parameter

State = dict[str, "np.ndarray | float | int | bool"]


class Optimizer:
    """Holds parameter handles, hyperparameters and per-parameter state arrays.

    ``state_dict`` is flat -- hyperparameters under their names, per-parameter arrays under
    "<index>.<name>" -- so it can be written to an .npz file as it is.
    """

    hyper_names: tuple[str, ...] = ("lr",)
    slot_names: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        if lr < 0:
            raise ValueError(f"invalid learning rate {lr}")
        self.lr = lr
        # slots[name][i] is the state array of parameter i, created on its first step.
        self.slots: dict[str, list[np.ndarray | None]] = {
            name: [None] * len(self.params) for name in self.slot_names}

    def zero_grad(self) -> None:
        """Reset every gradient to zero."""
        for p in self.params:
            p.grad[...] = 0

    def step(self) -> None:
        """Apply one update to every parameter."""
        raise NotImplementedError

    def state_dict(self) -> State:
        """Hyperparameters and state arrays (copies) in one flat dict."""
        state: State = {name: getattr(self, name) for name in self.hyper_names}
        for name, arrays in self.slots.items():
            for index, array in enumerate(arrays):
                if array is not None:
                    state[f"{index}.{name}"] = array.copy()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned (values may be 0-d arrays after an npz load)."""
        for name in self.hyper_names:
            current = getattr(self, name)
            value = np.asarray(state[name]).item()
            setattr(self, name, type(current)(value))
        for name, arrays in self.slots.items():
            for index in range(len(arrays)):
                key = f"{index}.{name}"
                arrays[index] = np.array(state[key], dtype=self.params[index].data.dtype) \
                    if key in state else None


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

    Per parameter, as torch.optim.SGD with dampening 0:
        g = grad + weight_decay * p
        buf = g on the first step, else momentum * buf + g
        g = g + momentum * buf if nesterov else buf
        p -= lr * g
    """

    hyper_names = ("lr", "momentum", "weight_decay", "nesterov")
    slot_names = ("momentum_buffer",)

    def __init__(self, params: Iterable[Parameter], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(params, lr)
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum requires momentum > 0")
        self.momentum, self.weight_decay, self.nesterov = momentum, weight_decay, nesterov

    def step(self) -> None:
        buffers = self.slots["momentum_buffer"]
        for index, p in enumerate(self.params):
            param, grad = p.data, p.grad
            if self.weight_decay:
                grad = grad + self.weight_decay * param
            if self.momentum:
                buf = buffers[index]
                if buf is None:
                    buf = buffers[index] = np.array(grad, dtype=param.dtype)
                else:
                    buf *= self.momentum
                    buf += grad
                grad = grad + self.momentum * buf if self.nesterov else buf
            param -= self.lr * grad  # in place: layers and the optimizer share this array


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction and L2 weight decay, as torch.optim.Adam.

    Per parameter at step t:
        g = grad + weight_decay * p
        m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g^2
        p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    hyper_names = ("lr", "beta1", "beta2", "eps", "weight_decay", "t")
    slot_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr)
        self.beta1, self.beta2 = betas
        self.eps, self.weight_decay = eps, weight_decay
        self.t = 0  # steps taken so far, for the bias correction

    def step(self) -> None:
        self.t += 1
        correction1 = 1.0 - self.beta1 ** self.t
        correction2_sqrt = math.sqrt(1.0 - self.beta2 ** self.t)
        step_size = self.lr / correction1
        means, squares = self.slots["exp_avg"], self.slots["exp_avg_sq"]
        for index, p in enumerate(self.params):
            param, grad = p.data, p.grad
            if self.weight_decay:
                grad = grad + self.weight_decay * param
            if means[index] is None:
                means[index] = np.zeros_like(param)
                squares[index] = np.zeros_like(param)
            m, v = means[index], squares[index]
            m *= self.beta1
            m += (1.0 - self.beta1) * grad
            v *= self.beta2
            v += (1.0 - self.beta2) * grad * grad
            denom = np.sqrt(v) / correction2_sqrt + self.eps
            param -= step_size * (m / denom)
