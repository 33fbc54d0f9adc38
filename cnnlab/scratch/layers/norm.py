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

    def _shape(self, x: np.ndarray) -> tuple[int, ...]:
        """Shape that broadcasts a per-channel vector against ``x``."""
        if x.ndim not in self.expected_ndim or x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}) got input {x.shape}")
        return (1, self.num_features) + (1,) * (x.ndim - 2)

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        """Normalise, scale and shift; in training also update the running statistics."""
        shape = self._shape(x)
        count = x.size // self.num_features
        if training:
            if count < 2:
                raise ValueError("BatchNorm needs more than one value per channel in training")
            mean = channel_sum(x) / count
            centred = x - mean.reshape(shape)
            var = channel_dot(centred, centred) / count  # biased: used for normalising
            self._update_running(mean, var, count)
        else:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
            centred = x - mean.reshape(shape)
        inv_std = (1.0 / np.sqrt(var + self.eps)).astype(x.dtype, copy=False)
        x_hat = centred
        x_hat *= inv_std.reshape(shape)  # in place: centred is our own temporary
        self._cache = (x_hat, inv_std, training)
        out = x_hat * self.params["weight"].reshape(shape)
        out += self.params["bias"].reshape(shape)
        return out

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
        x_hat, inv_std, training = self._cache
        shape = self._shape(grad_out)
        grad_bias = channel_sum(grad_out)
        grad_weight = channel_dot(grad_out, x_hat)
        self._set_grad("weight", grad_weight)
        self._set_grad("bias", grad_bias)
        scale = self.params["weight"] * inv_std  # d out / d x per channel, ignoring statistics
        if not training:  # running statistics are constants: a plain per-channel scale
            return grad_out * scale.reshape(shape)
        # Batch statistics depend on every sample; with g' = g * weight the textbook form is
        #   dx = inv_std * (g' - mean(g') - x_hat * mean(g' * x_hat)),
        # and mean(g') = weight * grad_bias / n, mean(g' x_hat) = weight * grad_weight / n.
        count = grad_out.size // self.num_features
        grad_x = grad_out * scale.reshape(shape)
        grad_x -= x_hat * (scale * grad_weight / count).reshape(shape)
        grad_x -= (scale * grad_bias / count).reshape(shape)
        return grad_x


def _by_channel(a: np.ndarray) -> np.ndarray:
    """(N, C, ...) -> (N, C, L) view for per-channel reductions."""
    return a.reshape(a.shape[0], a.shape[1], -1)


def channel_sum(a: np.ndarray) -> np.ndarray:
    """Sum over every axis except the channel axis 1."""
    return np.einsum("ncl->c", _by_channel(a))


def channel_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-channel inner product sum(a * b) without materialising the product."""
    return np.einsum("ncl,ncl->c", _by_channel(a), _by_channel(b))


class BatchNorm1d(_BatchNorm):
    """Batch norm for (N, C) or (N, C, L) inputs."""

    expected_ndim = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm for (N, C, H, W) inputs."""

    expected_ndim = (4,)
