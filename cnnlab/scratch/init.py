"""Weight initialisers (Xavier, Kaiming and torch's default), all driven by a numpy Generator."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Shape = tuple[int, ...]


def fans(shape: Shape) -> tuple[int, int]:
    """Return (fan_in, fan_out) of a Linear (out, in) or Conv (out, in, kh, kw) weight shape."""
    if len(shape) < 2:
        raise ValueError(f"fans need a weight with at least 2 dimensions, got shape {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _uniform(shape: Shape, bound: float, rng: np.random.Generator, dtype) -> np.ndarray:
    """Sample U(-bound, bound) in ``dtype``."""
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def xavier_uniform(shape: Shape, rng: np.random.Generator, gain: float = 1.0,
                   dtype=np.float32) -> np.ndarray:
    """Glorot uniform: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(shape)
    return _uniform(shape, gain * math.sqrt(6.0 / (fan_in + fan_out)), rng, dtype)


def xavier_normal(shape: Shape, rng: np.random.Generator, gain: float = 1.0,
                  dtype=np.float32) -> np.ndarray:
    """Glorot normal: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(shape)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return (rng.standard_normal(shape) * std).astype(dtype)


def kaiming_normal(shape: Shape, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """He normal for ReLU nets: N(0, 2 / fan_in), keeping activation variance constant."""
    fan_in, _ = fans(shape)
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype)


def default_weight(shape: Shape, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """torch's default Conv/Linear weight: kaiming_uniform(a=sqrt(5)), i.e. U(+-1/sqrt(fan_in))."""
    fan_in, _ = fans(shape)
    gain = math.sqrt(2.0 / (1.0 + 5.0))  # leaky_relu gain with a = sqrt(5)
    return _uniform(shape, gain * math.sqrt(3.0 / fan_in), rng, dtype)


def default_bias(shape: Shape, fan_in: int, rng: np.random.Generator,
                 dtype=np.float32) -> np.ndarray:
    """torch's default bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return _uniform(shape, 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0, rng, dtype)


WEIGHT_INITS: dict[str, Callable[..., np.ndarray]] = {
    "default": default_weight,
    "xavier_uniform": xavier_uniform,
    "xavier_normal": xavier_normal,
    "kaiming": kaiming_normal,
    "kaiming_normal": kaiming_normal,
}


def init_weight_and_bias(weight_shape: Shape, init: str, rng: np.random.Generator | None,
                         dtype) -> tuple[np.ndarray, np.ndarray]:
    """Create (weight, bias) for a Conv/Linear layer using the named scheme.

    The torch default also randomises the bias; the Xavier/Kaiming schemes start it at zero,
    the usual choice when the weights are scaled for the activation.
    """
    if init not in WEIGHT_INITS:
        raise ValueError(f"unknown init {init!r}; choose from {sorted(WEIGHT_INITS)}")
    rng = rng if rng is not None else np.random.default_rng()
    weight = WEIGHT_INITS[init](weight_shape, rng, dtype=dtype)
    if init == "default":
        bias = default_bias((weight_shape[0],), fans(weight_shape)[0], rng, dtype)
    else:
        bias = np.zeros(weight_shape[0], dtype=dtype)
    return weight, bias
