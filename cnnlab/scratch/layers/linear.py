"""Fully connected layer y = x W^T + b."""

from __future__ import annotations

import numpy as np

from ..init import init_weight_and_bias
from .base import DEFAULT_DTYPE, Layer


class Linear(Layer):
    """Affine map on (N, in_features) inputs with a torch-shaped (out, in) weight."""

    def __init__(self, in_features: int, out_features: int, *, init: str = "default",
                 rng: np.random.Generator | None = None, dtype=DEFAULT_DTYPE) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        weight, bias = init_weight_and_bias((out_features, in_features), init, rng, dtype)
        self._add_param("weight", weight)
        self._add_param("bias", bias)
        self._x: np.ndarray | None = None

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        self._x = x
        return x @ self.params["weight"].T + self.params["bias"]

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        self.backward_params_only(grad_out)
        return grad_out @ self.params["weight"]

    def backward_params_only(self, grad_out: np.ndarray) -> None:
        if self._x is None:
            raise RuntimeError("backward called before forward")
        self._set_grad("weight", grad_out.T @ self._x)
        self._set_grad("bias", grad_out.sum(axis=0))
