"""Base class shared by every layer: parameters, gradients, buffers and dtype handling."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

DEFAULT_DTYPE = np.float32


@dataclass(frozen=True)
class Parameter:
    """A handle on one trainable array of a layer, read through the layer on every access."""

    layer: Layer
    key: str

    @property
    def data(self) -> np.ndarray:
        """The parameter array itself (optimizers update it in place)."""
        return self.layer.params[self.key]

    @property
    def grad(self) -> np.ndarray:
        """The gradient written by the last backward pass."""
        return self.layer.grads[self.key]


class Layer:
    """A differentiable function with optional trainable parameters and buffers.

    Contract: ``forward(x, training)`` caches what ``backward`` needs; ``backward(grad_out)``
    returns the gradient with respect to the input and *overwrites* ``grads`` (no accumulation,
    so ``zero_grad`` is only needed for API symmetry with torch).
    """

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}

    # --- computation -------------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        """Compute the output for input ``x``."""
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """Return dLoss/dInput given dLoss/dOutput, filling ``grads``."""
        raise NotImplementedError

    def backward_params_only(self, grad_out: np.ndarray) -> None:
        """Fill ``grads`` without computing the input gradient (used for the first layer)."""
        self.backward(grad_out)

    def __call__(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        return self.forward(x, training)

    # --- parameters ----------------------------------------------------------------------------
    def _add_param(self, name: str, value: np.ndarray) -> None:
        """Register a trainable array and a zero gradient of the same shape."""
        self.params[name] = value
        self.grads[name] = np.zeros_like(value)

    def _set_grad(self, name: str, value: np.ndarray) -> None:
        """Store a freshly computed gradient in the parameter's dtype."""
        self.grads[name] = value.astype(self.params[name].dtype, copy=False)

    def parameters(self) -> list[Parameter]:
        """Trainable parameters in a stable order (what an optimizer is built from)."""
        return [Parameter(self, key) for key in self.params]

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Yield (dotted name, parameter) pairs."""
        for key in self.params:
            yield prefix + key, Parameter(self, key)

    def zero_grad(self) -> None:
        """Set every gradient to zero."""
        for key, value in self.grads.items():
            self.grads[key] = np.zeros_like(value)

    # --- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of parameters and buffers under torch-style names."""
        state = {k: v.copy() for k, v in self.params.items()}
        state.update({k: v.copy() for k, v in self.buffers.items()})
        return state

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        """Copy arrays into the existing parameters and buffers (in place, keeping dtypes)."""
        own = {**self.params, **self.buffers}
        _check_keys(own, state, strict)
        for key, target in own.items():
            if key in state:
                _copy_into(key, target, state[key])

    def astype(self, dtype: np.dtype | type) -> Layer:
        """Cast floating parameters, gradients and buffers to ``dtype``; returns self."""
        for store in (self.params, self.grads, self.buffers):
            for key, value in store.items():
                # Integer buffers such as num_batches_tracked keep their type, as in torch.
                if np.issubdtype(value.dtype, np.floating):
                    store[key] = value.astype(dtype)
        return self

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


def _check_keys(own: dict[str, np.ndarray], state: dict[str, np.ndarray], strict: bool) -> None:
    """Raise KeyError when ``strict`` and the key sets differ."""
    if not strict:
        return
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise KeyError(f"state_dict mismatch: missing={missing} unexpected={unexpected}")


def _copy_into(key: str, target: np.ndarray, value: np.ndarray) -> None:
    """Copy ``value`` into ``target`` after checking the shape."""
    value = np.asarray(value)
    if value.shape != target.shape:
        raise ValueError(f"shape mismatch for {key!r}: expected {target.shape}, got {value.shape}")
    np.copyto(target, value, casting="unsafe")


def pair(value: int | tuple[int, int]) -> tuple[int, int]:
    """Turn an int or a 2-tuple into a 2-tuple (torch accepts both for sizes)."""
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)
