"""Test-time augmentation (`train.tta`), used by every evaluation: per epoch, evaluate, predict.

'hflip' averages the logits (not the softmax probabilities) of each image and its mirror.
Averaging logits keeps the output a logit vector, so every loss (cross-entropy, hinge) and
top-k is computed on it unchanged; the prediction is the argmax of the mean logits.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn


class FlipTTA(nn.Module):
    """Mean of a model's logits on a batch and on its left-right mirror."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One forward pass over both views: in eval mode each sample is independent.
        plain, mirrored = self.model(torch.cat([x, x.flip(3)])).chunk(2)
        return (plain + mirrored) / 2


def with_tta(model: nn.Module, tta: Literal["none", "hflip"]) -> nn.Module:
    """The model evaluation should call: itself, or wrapped in the chosen augmentation."""
    return FlipTTA(model) if tta == "hflip" else model
