"""`cnnlab model summary`: each layer's output shape, parameters and FLOPs, counted by PyTorch."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.config import Config
from cnnlab.data.build import read_raw
from cnnlab.errors import UserError
from cnnlab.models import build_model


@dataclass
class Layer:
    """One leaf module: where it sits, what it is, and what one image costs there."""

    name: str
    type: str
    output_shape: tuple[int, ...] | None  # without the batch dimension; None if never called
    params: int
    flops: int


@dataclass
class ModelSummary:
    """A model's layers and totals for one input image."""

    model: str
    input_shape: tuple[int, int, int]
    num_classes: int
    layers: list[Layer]
    params: int
    trainable_params: int
    flops: int  # PyTorch's FlopCounterMode total: a multiply-add counts 2; convs and matmuls only
    unattributed_flops: int = 0  # counted outside any leaf module (e.g. a matmul in a forward())
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, e.g. for JSON."""
        return {
            "model": self.model, "input_shape": list(self.input_shape), "num_classes": self.num_classes,
            "params": self.params, "trainable_params": self.trainable_params, "flops": self.flops,
            "unattributed_flops": self.unattributed_flops,
            "layers": [{"name": x.name, "type": x.type, "output_shape": list(x.output_shape) if x.output_shape else None,
                        "params": x.params, "flops": x.flops} for x in self.layers],
        }


def summarize(model: nn.Module, input_shape: tuple[int, int, int], name: str = "", num_classes: int = 0) -> ModelSummary:
    """Run one zero image through `model` in eval mode, recording every leaf's output and FLOPs."""
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children()) and not _trivial(m)]
    shapes: dict[str, tuple[int, ...]] = {}
    flops = dict.fromkeys((n for n, _ in leaves), 0)
    counter = FlopCounterMode(display=False)
    start: dict[str, int] = {}
    handles = []
    for n, m in leaves:
        # The counter's running total before and after a leaf is that leaf's share (leaves do not nest).
        handles.append(m.register_forward_pre_hook(lambda _m, _i, n=n: start.__setitem__(n, counter.get_total_flops())))
        handles.append(m.register_forward_hook(lambda _m, _i, out, n=n: _record(n, out, counter, start, shapes, flops)))
    was_training = model.training
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        model.eval()
        with torch.no_grad(), counter:
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    # A model that is itself a single leaf (e.g. a bare nn.Linear) has the empty name.
    layers = [Layer(n or "(model)", type(m).__name__, shapes.get(n), sum(p.numel() for p in m.parameters()), flops[n])
              for n, m in leaves]
    total = counter.get_total_flops()
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    s = ModelSummary(name or type(model).__name__, input_shape, num_classes, layers, params, trainable, total,
                     total - sum(flops.values()))
    in_leaves = sum(x.params for x in layers)
    if in_leaves != params:
        s.notes.append(f"{params - in_leaves:,} parameters belong to non-leaf modules and are not in the table")
    return s


def _trivial(m: nn.Module) -> bool:
    """Placeholders that change nothing (a disabled norm or dropout) would only clutter the table."""
    return isinstance(m, nn.Identity) or (isinstance(m, nn.modules.dropout._DropoutNd) and m.p == 0)


def _record(name: str, out: Any, counter: FlopCounterMode, start: dict[str, int],
            shapes: dict[str, tuple[int, ...]], flops: dict[str, int]) -> None:
    flops[name] += counter.get_total_flops() - start[name]
    if isinstance(out, torch.Tensor):
        shapes[name] = tuple(out.shape[1:])


def parse_shape(text: str) -> tuple[int, int, int]:
    """'3x32x32' -> (3, 32, 32)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*[xX,]\s*(\d+)\s*", text)
    if not m or min(int(g) for g in m.groups()) < 1:
        raise UserError(f"--input: '{text}' is not a shape; give channels x height x width, e.g. 3x32x32")
    c, h, w = (int(g) for g in m.groups())
    return c, h, w


def summarize_config(cfg: Config, input_shape: tuple[int, int, int] | None = None,
                     num_classes: int | None = None) -> ModelSummary:
    """Build cfg's model for its data (read only for what the caller did not give) and summarise it."""
    if input_shape is None or num_classes is None:
        raw = read_raw(cfg.data)
        c, h, w = raw.train.x.shape[1:]
        input_shape = input_shape or (int(c), int(h), int(w))
        num_classes = num_classes or len(raw.classes)
    if num_classes < 1:
        raise UserError(f"--classes: {num_classes} is not a class count; give 1 or more")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, input_shape, num_classes)
    summary = summarize(model, input_shape, cfg.model.name, num_classes)
    if cfg.train.freeze is not None:
        from cnnlab.models.freezing import frozen_names

        names = set(frozen_names(model, cfg.train.freeze.until))
        held = sum(p.numel() for n, p in model.named_parameters() if n in names)
        summary.notes.append(f"train.freeze: {held:,} parameters frozen, {summary.params - held:,} trainable in "
                             f"epoch(s) 1-{cfg.train.freeze.epochs} (until {cfg.train.freeze.until}); then all train")
    return summary
