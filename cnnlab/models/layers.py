"""Building blocks shared by the model families: activations, normalisation, initialisation."""

from __future__ import annotations

from typing import Literal

from torch import nn

Activation = Literal["relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid", "softplus"]
Norm = Literal["batch", "group", "layer", "instance", "none"]
Init = Literal["default", "xavier_uniform", "xavier_normal", "kaiming"]

_ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True),
    "elu": lambda: nn.ELU(inplace=True),
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
}


def make_activation(name: Activation) -> nn.Module:
    """A fresh activation module."""
    return _ACTIVATIONS[name]()


def norm2d(name: Norm, channels: int) -> nn.Module:
    """A normalisation layer for (N, C, H, W) feature maps; Identity for 'none'."""
    if name == "batch":
        return nn.BatchNorm2d(channels)
    if name == "group":
        groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if name == "layer":
        return nn.GroupNorm(1, channels)  # normalises over (C, H, W), like LayerNorm on images
    if name == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


def norm1d(name: Norm, features: int) -> nn.Module:
    """A normalisation layer for (N, F) features; Identity for 'none' and spatial-only kinds."""
    if name == "batch":
        return nn.BatchNorm1d(features)
    if name in ("layer", "group"):
        return nn.LayerNorm(features)
    return nn.Identity()


def initialize(model: nn.Module, scheme: Init, nonlinearity: str = "relu") -> None:
    """Re-initialise conv and linear weights (biases to zero) unless scheme is 'default'."""
    if scheme == "default":
        return
    gain_name = "leaky_relu" if nonlinearity == "leaky_relu" else "relu"
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if scheme == "xavier_uniform":
                nn.init.xavier_uniform_(m.weight)
            elif scheme == "xavier_normal":
                nn.init.xavier_normal_(m.weight)
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity=gain_name)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
