"""train.freeze: fine-tuning's first epochs with part of the network held fixed (fastai's
`fine_tune`): for `epochs` epochs only the head (or everything from a named layer on) trains;
the frozen BatchNorm layers stay in eval mode, so their running statistics are not moved by
batches of the new data either; then every parameter trains. Which part is frozen depends only on
the epoch, so a resumed run freezes exactly as the uninterrupted one did."""

from __future__ import annotations

from typing import Any

from torch import nn

from cnnlab.callbacks import Callback
from cnnlab.config import FreezeConfig
from cnnlab.models.freezing import frozen_names


class Freeze(Callback):
    """Holds the frozen part fixed in epochs 1..settings.epochs (set at each epoch's start)."""

    def __init__(self, settings: FreezeConfig, model: nn.Module, engine: Any):
        self.epochs = settings.epochs
        names = set(frozen_names(model, settings.until))
        self.params = [p for n, p in model.named_parameters() if n in names]
        # BatchNorm layers all of whose parameters are frozen: their statistics are held too.
        held = {id(p) for p in self.params}
        self.norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                      and list(m.parameters(recurse=False))
                      and all(id(p) in held for p in m.parameters(recurse=False))]
        self.engine = engine
        self.trainable = sum(p.numel() for n, p in model.named_parameters() if n not in names)
        self.total = sum(p.numel() for p in model.parameters())

    def on_epoch_start(self, epoch: int) -> None:
        frozen = epoch <= self.epochs
        for p in self.params:
            p.requires_grad_(not frozen)
            if frozen:
                p.grad = None
        self.engine.hold_eval = self.norms if frozen else []

    def line(self) -> str:
        return (f"frozen for epoch(s) 1-{self.epochs}: {self.total - self.trainable:,} of {self.total:,} parameters "
                f"({len(self.norms)} BatchNorm layers in eval mode); then all train")
