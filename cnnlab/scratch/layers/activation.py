"""Element-wise activation functions and their derivatives."""

from __future__ import annotations

import numpy as np

from .base import Layer


class _Elementwise(Layer):
    """Base for parameter-free element-wise layers: caches the input or output for backward."""

    def __init__(self) -> None:
        super().__init__()
        self._saved: np.ndarray | None = None

    def _saved_array(self) -> np.ndarray:
        if self._saved is None:
            raise RuntimeError("backward called before forward")
        return self._saved


class ReLU(_Elementwise):
    """max(x, 0)."""

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        out = np.maximum(x, 0)
        self._saved = out  # the output tells where the input was positive
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * (self._saved_array() > 0)


class LeakyReLU(_Elementwise):
    """x for x > 0, negative_slope * x otherwise."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        self._saved = x
        return np.where(x > 0, x, x * self.negative_slope)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return np.where(self._saved_array() > 0, grad_out, grad_out * self.negative_slope)


def stable_sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow and with full relative precision for x << 0."""
    e = np.exp(-np.abs(x))  # never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


class Sigmoid(_Elementwise):
    """Logistic function; derivative y * (1 - y)."""

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        self._saved = stable_sigmoid(x)
        return self._saved

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        y = self._saved_array()
        return grad_out * y * (1.0 - y)


class Tanh(_Elementwise):
    """Hyperbolic tangent; derivative 1 - y^2."""

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        self._saved = np.tanh(x)
        return self._saved

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        y = self._saved_array()
        return grad_out * (1.0 - y * y)


class Softplus(_Elementwise):
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (as torch)."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        self._saved = x
        scaled = x * self.beta
        # Clip before exp so the branch we discard cannot overflow.
        soft = np.log1p(np.exp(np.minimum(scaled, self.threshold))) / self.beta
        return np.where(scaled > self.threshold, x, soft).astype(x.dtype, copy=False)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        scaled = self._saved_array() * self.beta
        slope = np.where(scaled > self.threshold, 1.0, stable_sigmoid(scaled))
        return (grad_out * slope).astype(grad_out.dtype, copy=False)
