"""Model parts that are torch classes: residual blocks and the channel adapter.

Kept apart from the family builders, which import torch lazily (cnnlab/lazy.py): this module
is imported only when a model is built, never to check a config.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.layers import make_activation, norm2d


def shortcut(c_in: int, c_out: int, stride: int, norm: str) -> nn.Module:
    """Identity, or a strided 1x1 projection (+ norm) when the shape changes (torchvision's choice)."""
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=norm == "none"), norm2d(norm, c_out))  # type: ignore[arg-type]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (a 1x1 projection when shapes change)."""

    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int, norm: str, act: str, dropout: float = 0.0):
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(c_in, width, 3, stride, 1, bias=bias)
        self.bn1 = norm2d(norm, width)  # type: ignore[arg-type]
        self.act1 = make_activation(act)  # type: ignore[arg-type]
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=bias)
        self.bn2 = norm2d(norm, width)  # type: ignore[arg-type]
        self.act2 = make_activation(act)  # type: ignore[arg-type]
        self.shortcut = shortcut(c_in, width, stride, norm)

    def last_norm(self) -> nn.Module:
        return self.bn2

    def forward(self, x):
        out = self.drop(self.act1(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride, as torchvision's v1.5) -> 1x1 expand to 4x width."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int, norm: str, act: str, dropout: float = 0.0):
        super().__init__()
        bias = norm == "none"
        c_out = width * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=bias)
        self.bn1 = norm2d(norm, width)  # type: ignore[arg-type]
        self.act1 = make_activation(act)  # type: ignore[arg-type]
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=bias)
        self.bn2 = norm2d(norm, width)  # type: ignore[arg-type]
        self.act2 = make_activation(act)  # type: ignore[arg-type]
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=bias)
        self.bn3 = norm2d(norm, c_out)  # type: ignore[arg-type]
        self.act3 = make_activation(act)  # type: ignore[arg-type]
        self.shortcut = shortcut(c_in, c_out, stride, norm)

    def last_norm(self) -> nn.Module:
        return self.bn3

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.drop(self.act2(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        return self.act3(out + self.shortcut(x))


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ChannelAdapter(nn.Module):
    """Feeds grayscale (or other channel counts) to a model built for RGB."""

    def __init__(self, in_channels: int, model: nn.Module):
        super().__init__()
        self.in_channels = in_channels
        self.proj = None if in_channels == 1 else nn.Conv2d(in_channels, 3, 1)
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.expand(-1, 3, -1, -1) if self.proj is None else self.proj(x)
        return self.model(x)
