"""ResNet with basic blocks: configurable blocks per stage and widths, a stem for the input size."""

from __future__ import annotations

from typing import Literal

from torch import nn

from cnnlab.models import CONTEXT, MODELS
from cnnlab.models.layers import Activation, Init, Norm, initialize, make_activation, norm2d


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (a 1x1 projection when shapes change)."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, act: str, dropout: float = 0.0):
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=bias)
        self.bn1 = norm2d(norm, c_out)  # type: ignore[arg-type]
        self.act1 = make_activation(act)  # type: ignore[arg-type]
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=bias)
        self.bn2 = norm2d(norm, c_out)  # type: ignore[arg-type]
        self.act2 = make_activation(act)  # type: ignore[arg-type]
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=bias), norm2d(norm, c_out))  # type: ignore[arg-type]

    def forward(self, x):
        out = self.drop(self.act1(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


@MODELS.register("resnet", context=CONTEXT)
def resnet(
    in_channels: int,
    num_classes: int,
    input_size: tuple[int, int],
    blocks: list[int] = [2, 2, 2, 2],  # noqa: B006
    widths: list[int] = [64, 128, 256, 512],  # noqa: B006
    stem: Literal["auto", "small", "imagenet"] = "auto",
    norm: Norm = "batch",
    activation: Activation = "relu",
    dropout: float = 0.0,
    block_dropout: float = 0.0,
    init: Init = "kaiming",
    zero_init_residual: bool = True,
) -> nn.Module:
    """Stem, then stage i of blocks[i] basic blocks at widths[i] (stride 2 from the second stage)."""
    if len(blocks) != len(widths):
        from cnnlab.errors import ConfigError

        raise ConfigError(f"model.blocks: {len(blocks)} stages but model.widths has {len(widths)}")
    if stem == "auto":
        # Small images (28-64 px) lose too much to a 7x7/2 conv + max pool; 224 px inputs need it.
        stem = "imagenet" if min(input_size) >= 128 else "small"
    bias = norm == "none"
    if stem == "small":
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=bias)]
    else:
        layers = [nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=bias)]
    layers += [norm2d(norm, widths[0]), make_activation(activation)]
    if stem == "imagenet":
        layers.append(nn.MaxPool2d(3, 2, 1))
    c = widths[0]
    for i, (n, width) in enumerate(zip(blocks, widths)):
        for j in range(n):
            stride = 2 if (i > 0 and j == 0) else 1
            layers.append(BasicBlock(c, width, stride, norm, activation, block_dropout))
            c = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(c, num_classes))
    model = nn.Sequential(*layers)
    initialize(model, init, activation)
    if zero_init_residual and norm in ("batch", "group", "layer"):
        # Each block starts as the identity: helps deep nets train from the first step.
        for m in model.modules():
            if isinstance(m, BasicBlock) and hasattr(m.bn2, "weight"):
                nn.init.zeros_(m.bn2.weight)
    return model
