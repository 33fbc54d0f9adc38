"""Model parts that are torch classes: residual blocks and the channel adapter.

Kept apart from the family builders, which import torch lazily (cnnlab/lazy.py): this module
is imported only when a model is built, never to check a config.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.layers import make_activation, norm2d


def shortcut(c_in: int, c_out: int, stride: int, norm: str, always: bool = False, bias: bool | None = None) -> nn.Module:
    """Identity, or a strided 1x1 projection (+ norm) when the shape changes (torchvision's choice).

    always: the projection on every block, also where the shape stays (some written-up nets).
    bias: the projection's conv bias; None keeps it only without a norm.
    """
    if stride == 1 and c_in == c_out and not always:
        return nn.Identity()
    bias = norm == "none" if bias is None else bias
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=bias), norm2d(norm, c_out))  # type: ignore[arg-type]


# Where a block's dropout goes: after its first activation (Dropout2d, the default), or as the
# Tiny ImageNet write-up's block has it: element-wise nn.Dropout right after the first conv
# (before its norm) and again on the sum, before the last activation.
DROPOUT_AT = ("after_act1", "after_conv1_and_sum")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (a 1x1 projection when shapes change).

    dropout_at after_act1: act1(bn1(conv1 x)) -> Dropout2d -> bn2(conv2) + shortcut -> act2.
    after_conv1_and_sum: act1(bn1(Dropout(conv1 x))) -> bn2(conv2) + shortcut -> Dropout -> act2.
    """

    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int, norm: str, act: str, dropout: float = 0.0,
                 dropout_at: str = "after_act1", projection: bool = False, bias: bool | None = None):
        super().__init__()
        bias = norm == "none" if bias is None else bias
        self.dropout_at = dropout_at
        self.conv1 = nn.Conv2d(c_in, width, 3, stride, 1, bias=bias)
        if dropout_at == "after_act1":
            self.bn1 = norm2d(norm, width)  # type: ignore[arg-type]
            self.act1 = make_activation(act)  # type: ignore[arg-type]
            self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        else:  # registered in the order they run, so summaries list them so
            self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
            self.bn1 = norm2d(norm, width)  # type: ignore[arg-type]
            self.act1 = make_activation(act)  # type: ignore[arg-type]
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=bias)
        self.bn2 = norm2d(norm, width)  # type: ignore[arg-type]
        if dropout_at == "after_act1":
            self.act2 = make_activation(act)  # type: ignore[arg-type]
            self.shortcut = shortcut(c_in, width, stride, norm, projection, bias)
        else:
            self.shortcut = shortcut(c_in, width, stride, norm, projection, bias)
            self.drop_sum = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
            self.act2 = make_activation(act)  # type: ignore[arg-type]

    def last_norm(self) -> nn.Module:
        return self.bn2

    def forward(self, x):
        if self.dropout_at == "after_act1":
            out = self.drop(self.act1(self.bn1(self.conv1(x))))
            out = self.bn2(self.conv2(out))
            return self.act2(out + self.shortcut(x))
        out = self.act1(self.bn1(self.drop(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return self.act2(self.drop_sum(out + self.shortcut(x)))


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride, as torchvision's v1.5) -> 1x1 expand to 4x width.

    dropout_at after_act1: Dropout2d after the 3x3 conv's activation; after_conv1_and_sum:
    nn.Dropout right after the first conv and on the sum, as BasicBlock's.
    """

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int, norm: str, act: str, dropout: float = 0.0,
                 dropout_at: str = "after_act1", projection: bool = False, bias: bool | None = None):
        super().__init__()
        bias = norm == "none" if bias is None else bias
        c_out = width * self.expansion
        self.dropout_at = dropout_at
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=bias)
        if dropout_at != "after_act1":
            self.drop_conv1 = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.bn1 = norm2d(norm, width)  # type: ignore[arg-type]
        self.act1 = make_activation(act)  # type: ignore[arg-type]
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=bias)
        self.bn2 = norm2d(norm, width)  # type: ignore[arg-type]
        self.act2 = make_activation(act)  # type: ignore[arg-type]
        if dropout_at == "after_act1":
            self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=bias)
        self.bn3 = norm2d(norm, c_out)  # type: ignore[arg-type]
        if dropout_at == "after_act1":
            self.act3 = make_activation(act)  # type: ignore[arg-type]
            self.shortcut = shortcut(c_in, c_out, stride, norm, projection, bias)
        else:
            self.shortcut = shortcut(c_in, c_out, stride, norm, projection, bias)
            self.drop_sum = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
            self.act3 = make_activation(act)  # type: ignore[arg-type]

    def last_norm(self) -> nn.Module:
        return self.bn3

    def forward(self, x):
        if self.dropout_at == "after_act1":
            out = self.act1(self.bn1(self.conv1(x)))
            out = self.drop(self.act2(self.bn2(self.conv2(out))))
            out = self.bn3(self.conv3(out))
            return self.act3(out + self.shortcut(x))
        out = self.act1(self.bn1(self.drop_conv1(self.conv1(x))))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.act3(self.drop_sum(out + self.shortcut(x)))


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
