"""Layers that reshape or mask without parameters: Flatten and Dropout."""

from __future__ import annotations

import numpy as np

from .base import Layer


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W), like torch.nn.Flatten()."""

    def __init__(self) -> None:
        super().__init__()
        self._shape: tuple[int, ...] | None = None

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._shape is None:
            raise RuntimeError("backward called before forward")
        return grad_out.reshape(self._shape)


class Dropout(Layer):
    """Inverted dropout: zero each element with probability p and scale survivors by 1/(1-p).

    Scaling at training time keeps the expected activation unchanged, so evaluation is the
    identity. The mask comes from ``rng`` (a numpy Generator) so runs are reproducible.
    """

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p
        self.rng = rng if rng is not None else np.random.default_rng()
        self._mask: np.ndarray | None = None

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        if not training or self.p == 0.0:
            self._mask = None
            return x
        if self.p == 1.0:
            self._mask = np.zeros_like(x)
        else:
            dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
            keep = self.rng.random(x.shape, dtype=dtype) >= self.p
            # The scaled mask is stored so backward is a single multiply.
            self._mask = keep * x.dtype.type(1.0 / (1.0 - self.p))
        return x * self._mask

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out if self._mask is None else grad_out * self._mask
