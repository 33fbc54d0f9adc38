"""Building blocks shared by the model families: option types, activations, normalisation, initialisation."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from cnnlab.lazy import lazy

nn = lazy("torch.nn")

Activation = Literal["relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid", "softplus"]
Norm = Literal["batch", "group", "layer", "instance", "none"]
Init = Literal["default", "xavier_uniform", "xavier_normal", "kaiming"]
# A dropout probability as a config option: 0 turns it off, 1 would drop everything.
Prob = Annotated[float, Field(ge=0.0, lt=1.0)]
# Biases of layers a norm follows: auto drops them (the norm's shift cancels them), always keeps
# every conv and linear layer's bias, as nets written with nn.Conv2d/nn.Linear defaults have.
Bias = Literal["auto", "always"]
# A kernel size, a stride or a layer count as a config option.
Positive = Annotated[int, Field(ge=1)]

_ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True),
    "elu": lambda: nn.ELU(inplace=True),
    "gelu": lambda: nn.GELU(),
    "tanh": lambda: nn.Tanh(),
    "sigmoid": lambda: nn.Sigmoid(),
    "softplus": lambda: nn.Softplus(),
}

# The gain kaiming init should use for each activation (torch.nn.init.calculate_gain names).
_KAIMING_GAIN = {"leaky_relu": "leaky_relu", "tanh": "tanh", "sigmoid": "sigmoid"}


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


def conv_block(c_in: int, c_out: int, kernel: int, stride: int, padding: int, norm: Norm,
               activation: Activation, bias: bool | None = None) -> list[nn.Module]:
    """conv -> norm -> activation; the conv has a bias only when no norm follows, unless told."""
    bias = norm == "none" if bias is None else bias
    return [nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=bias), norm2d(norm, c_out), make_activation(activation)]


def fc_stack(features: int, hidden: list[int], num_classes: int, activation: Activation, norm: Norm,
             dropout: float, dropout_first: bool = False, bias: Bias = "auto",
             activate: bool = True) -> list[nn.Module]:
    """Hidden FC layers (linear -> norm -> activation -> dropout), then the classifier layer.

    With `dropout_first` each hidden layer's dropout comes before its linear layer instead, as in
    AlexNet (torchvision's VGG puts it after the activation); the classifier gets none either way.
    bias always keeps the bias of a linear layer a norm follows; activate False leaves the
    activations out (the hidden layers are then linear maps, as some written nets have it).
    """
    layers: list[nn.Module] = []
    width = features
    for h in hidden:
        if dropout_first and dropout > 0:
            layers.append(nn.Dropout(dropout))
        bn = norm1d(norm, h)
        # A bias before a normalisation layer is cancelled by it; keep it only when none follows.
        layers += [nn.Linear(width, h, bias=bias == "always" or isinstance(bn, nn.Identity)), bn]
        if activate:
            layers.append(make_activation(activation))
        if not dropout_first and dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, num_classes))
    return layers


def initialize(model: nn.Module, scheme: Init, nonlinearity: str = "relu") -> None:
    """Re-initialise conv and linear weights (biases to zero) unless scheme is 'default'.

    kaiming: He-normal with the activation's gain; fan-out for convolutions (as torchvision's
    ResNets) and fan-in for linear layers, so a 10-way classifier on 256 features does not start
    with huge logits.
    """
    if scheme == "default":
        return
    gain_name = _KAIMING_GAIN.get(nonlinearity, "relu")
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if scheme == "xavier_uniform":
                nn.init.xavier_uniform_(m.weight)
            elif scheme == "xavier_normal":
                nn.init.xavier_normal_(m.weight)
            else:
                mode = "fan_out" if isinstance(m, nn.Conv2d) else "fan_in"
                nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity=gain_name)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
