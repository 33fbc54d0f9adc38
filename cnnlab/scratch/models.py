"""Model builders: the LeNet used throughout cnnlab and a small spec-driven CNN builder."""

from __future__ import annotations

from typing import Any

import numpy as np

from .layers import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Layer,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    Sigmoid,
    Softplus,
    Tanh,
)
from .layers.base import DEFAULT_DTYPE

ACTIVATIONS: dict[str, type[Layer]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "softplus": Softplus,
}

Spec = list[dict[str, Any]]


def lenet_spec(num_classes: int = 10, batch_norm: bool = True, dropout: float = 0.5,
               activation: str = "relu") -> Spec:
    """The LeNet layer list: conv5x5x6 [BN] act [dropout] pool2 conv5x5x16 act pool2 FC."""
    spec: Spec = [{"type": "conv", "out_channels": 6, "kernel_size": 5}]
    if batch_norm:
        spec.append({"type": "bn"})
    spec.append({"type": "act", "name": activation})
    if dropout > 0:
        spec.append({"type": "dropout", "p": dropout})
    spec += [
        {"type": "pool", "kind": "max", "kernel_size": 2},
        {"type": "conv", "out_channels": 16, "kernel_size": 5},
        {"type": "act", "name": activation},
        {"type": "pool", "kind": "max", "kernel_size": 2},
        {"type": "flatten"},
        {"type": "linear", "out_features": num_classes},
    ]
    return spec


def lenet(in_channels: int = 1, num_classes: int = 10, input_size: int = 28,
          batch_norm: bool = True, dropout: float = 0.5, activation: str = "relu",
          rng: np.random.Generator | None = None, dtype=DEFAULT_DTYPE) -> Sequential:
    """LeNet-style CNN; for 28x28 input the maps go 28 -> 24 -> 12 -> 8 -> 4 (16*4*4 = 256)."""
    spec = lenet_spec(num_classes, batch_norm, dropout, activation)
    return build(spec, in_channels=in_channels, input_size=input_size, rng=rng, dtype=dtype)


def build(spec: Spec, in_channels: int, input_size: int | tuple[int, int],
          rng: np.random.Generator | None = None, dtype=DEFAULT_DTYPE) -> Sequential:
    """Build a Sequential from a list of layer dicts, inferring every input size.

    Entry types (extra keys are passed to the layer):
      conv     out_channels, kernel_size, [stride, padding, init]
      pool     kind "max" | "avg", kernel_size, [stride]
      bn       (BatchNorm2d before flatten, BatchNorm1d after)
      act      name in ACTIVATIONS, plus its own keyword arguments
      dropout  p
      flatten
      linear   out_features, [init]
    """
    rng = rng if rng is not None else np.random.default_rng()
    height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
    channels: int = in_channels
    features: int | None = None  # set once flattened
    model = Sequential()
    for entry in spec:
        kind, options = entry["type"], {k: v for k, v in entry.items() if k != "type"}
        if kind == "conv":
            layer = Conv2d(channels, rng=rng, dtype=dtype, **options)
            (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
            channels = layer.out_channels
            height, width = (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1
        elif kind == "pool":
            pool_kind = options.pop("kind", "max")
            layer = {"max": MaxPool2d, "avg": AvgPool2d}[pool_kind](**options)
            (kh, kw), (sh, sw) = layer.kernel_size, layer.stride
            height, width = (height - kh) // sh + 1, (width - kw) // sw + 1
        elif kind == "bn":
            layer = (BatchNorm2d(channels, dtype=dtype, **options) if features is None
                     else BatchNorm1d(features, dtype=dtype, **options))
        elif kind == "act":
            layer = ACTIVATIONS[options.pop("name")](**options)
        elif kind == "dropout":
            layer = Dropout(options.get("p", 0.5), rng=rng)
        elif kind == "flatten":
            layer, features = Flatten(), channels * height * width
        elif kind == "linear":
            if features is None:
                raise ValueError("a linear layer needs a flatten before it")
            layer = Linear(features, rng=rng, dtype=dtype, **options)
            features = layer.out_features
        else:
            raise ValueError(f"unknown layer type {kind!r}")
        if height < 1 or width < 1:
            raise ValueError(f"layer {entry} shrinks the feature map below 1x1")
        model.append(layer)
    return model
