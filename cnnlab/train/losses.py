"""Loss functions, registered under the name used in `loss.name`."""

from __future__ import annotations

from torch import nn

from cnnlab.registry import Registry

LOSSES = Registry("loss", "loss.name")
# Losses that accept (B, K) class probabilities as targets, as mixup and cutmix produce;
# a config combining any other loss with them is rejected before training.
SOFT_TARGET_LOSSES: set[str] = {"cross_entropy"}


@LOSSES.register("cross_entropy", context=("num_classes",))
def cross_entropy(num_classes: int, label_smoothing: float = 0.0) -> nn.Module:
    """Softmax cross-entropy, optionally with label smoothing; targets may be class indices or probabilities."""
    if not 0.0 <= label_smoothing < 1.0:
        from cnnlab.errors import ConfigError

        raise ConfigError(f"loss.label_smoothing: must be in [0, 1), got {label_smoothing}")
    return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
