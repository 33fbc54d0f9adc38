"""Batch normalisation over every axis except the channel axis 1 (torch semantics)."""

from __future__ import annotations

import numpy as np

from .base import DEFAULT_DTYPE, Layer


class _BatchNorm(Layer):
    """Normalise each channel with batch statistics in training, running statistics in eval."""

    expected_ndim: tuple[int, ...] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, *,
                 dtype=DEFAULT_DTYPE) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self._add_param("weight", np.ones(num_features, dtype=dtype))
        self._add_param("bias", np.zeros(num_features, dtype=dtype))
        self.buffers["running_mean"] = np.zeros(num_features, dtype=dtype)
        self.buffers["running_var"] = np.ones(num_features, dtype=dtype)
        self.buffers["num_batches_tracked"] = np.zeros((), dtype=np.int64)
        self._cache: tuple | None = None

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    def _broadcast(self, x: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Reduction axes and the shape that broadcasts a per-channel vector against ``x``."""
        if x.ndim not in self.expected_ndim or x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}) got input {x.shape}")
        axes = (0, *range(2, x.ndim))
        return axes, (1, self.num_features) + (1,) * (x.ndim - 2)

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        """Normalise, scale and shift; in training also update the running statistics."""
        axes, shape = self._broadcast(x)
        count = x.size // self.num_features
        if training:
            if count < 2:
                raise ValueError("BatchNorm needs more than one value per channel in training")
            mean = x.mean(axis=axes)
            centred = x - mean.reshape(shape)
            var = np.mean(np.square(centred), axis=axes)  # biased: used for normalising
            self._update_running(mean, var, count)
        else:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
            centred = x - mean.reshape(shape)
        inv_std = (1.0 / np.sqrt(var + self.eps)).astype(x.dtype, copy=False)
        x_hat = centred * inv_std.reshape(shape)
        self._cache = (x_hat, inv_std, axes, shape, training)
        return x_hat * self.params["weight"].reshape(shape) + self.params["bias"].reshape(shape)

    def _update_running(self, mean: np.ndarray, var: np.ndarray, count: int) -> None:
        """Exponential moving averages; torch stores the *unbiased* variance here."""
        m = self.momentum
        running_mean, running_var = self.buffers["running_mean"], self.buffers["running_var"]
        running_mean *= 1.0 - m
        running_mean += m * mean
        running_var *= 1.0 - m
        running_var += m * var * (count / (count - 1))
        self.buffers["num_batches_tracked"] += 1

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """Gradients of the affine part, then through the normalisation itself."""
        if self._cache is None:
            raise RuntimeError("backward called before forward")
        x_hat, inv_std, axes, shape, training = self._cache
        self._set_grad("weight", np.sum(grad_out * x_hat, axis=axes))
        self._set_grad("bias", grad_out.sum(axis=axes))
        grad_hat = grad_out * self.params["weight"].reshape(shape)
        if not training:  # running statistics are constants: a plain per-channel scale
            return grad_hat * inv_std.reshape(shape)
        # Batch statistics depend on every sample, which adds the two mean-subtracted terms:
        # dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)).
        mean_grad = grad_hat.mean(axis=axes).reshape(shape)
        mean_grad_xhat = np.mean(grad_hat * x_hat, axis=axes).reshape(shape)
        return (grad_hat - mean_grad - x_hat * mean_grad_xhat) * inv_std.reshape(shape)


class BatchNorm1d(_BatchNorm):
    """Batch norm for (N, C) or (N, C, L) inputs."""

    expected_ndim = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm for (N, C, H, W) inputs."""

    expected_ndim = (4,)
