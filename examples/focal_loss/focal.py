"""Focal loss (Lin et al. 2017): cross-entropy that down-weights the examples a model already gets
right, for imbalanced classes. Written as a plain function: cnnlab calls it as
`focal_loss(logits, targets)` with the config's options (gamma, alpha) bound; it must return a
scalar that depends on the logits (cnnlab tries it on a small batch before training)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0, alpha: float = 1.0) -> torch.Tensor:
    """Focal loss: alpha * (1 - p_t) ** gamma * cross-entropy, averaged over the batch (gamma 0: cross-entropy)."""
    ce = F.cross_entropy(logits, targets, reduction="none")
    p_t = torch.exp(-ce)
    return (alpha * (1 - p_t) ** gamma * ce).mean()
