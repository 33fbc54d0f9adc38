"""The data-parallel engine: a torch engine whose network is wrapped in DistributedDataParallel,
seen by the one training loop exactly as a single-process engine.

The loaders give each process its rows of a global batch and the whole batch's labels
(cnnlab/distributed.py). Each step trains on this process's rows (DDP averages the gradients
across processes during backward), then returns the whole batch's mean loss and logits, so the
loop's running sums, the divergence guard, steps.csv and every metric are the same numbers in
every process. Evaluation gathers logits the same way, after rank 0's BatchNorm statistics are
shared, so every process evaluates the weights rank 0 saves. Checkpoints hold the plain module's
weights (no `module.` prefixes): evaluate, predict and resume read them like any run's.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from cnnlab import distributed
from cnnlab.distributed import World
from cnnlab.errors import ConfigError
from cnnlab.training.engine import Engine, StepResult


def wrap(model: nn.Module, device: torch.device, world: World) -> nn.Module:
    """`model` as training steps call it in this process: DDP across the run's processes, or itself."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    with distributed.collective("sharing the initial weights"):  # DDP broadcasts rank 0's weights
        return DistributedDataParallel(model, device_ids=ids, gradient_as_bucket_view=True)


def sync_batchnorm(model: nn.Module, enabled: bool, device: torch.device, world: World) -> nn.Module:
    """model.sync_bn: BatchNorm -> SyncBatchNorm in distributed runs (GPUs only: torch's kernel
    is CUDA's). The parameters and buffers are the same tensors under the same names."""
    if not enabled or not world.distributed:
        return model
    if device.type != "cuda":
        raise ConfigError("model.sync_bn: torch's SyncBatchNorm runs on GPUs only; on the CPU each process "
                          "normalises its own rows: set model.sync_bn=false")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


class GatherLogits(nn.Module):
    """Evaluation's model: this process's rows in, the whole batch's logits out."""

    def __init__(self, model: Any, num_classes: int, world: World):
        super().__init__()
        self.model, self.num_classes, self.world = model, num_classes, world

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x):
            logits = self.model(x)
        else:  # the last batch had fewer images than processes: nothing here
            logits = torch.zeros((0, self.num_classes), device=x.device)
        return distributed.gather_any(logits.float(), self.world)


class DataParallelEngine:
    """An engine (the torch engine, its model already wrapped by `wrap`) run by every process of a
    distributed run; the loop sees whole batches."""

    def __init__(self, inner: Engine, num_classes: int, world: World):
        self.inner, self.world = inner, world
        self.checkpoint_format, self.eval_tag = inner.checkpoint_format, inner.eval_tag
        self._eval = GatherLogits(inner.eval_model(), num_classes, world)

    def set_lr(self, lr: float, momentum: float | None = None) -> None:
        self.inner.set_lr(lr, momentum)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> StepResult:
        n = len(y)
        mine = distributed.rows(y, self.world)
        with distributed.collective("averaging gradients"):
            step = self.inner.train_step(x, mine)
        loss = distributed.mean_over(step.loss, len(mine), n, self.world)
        logits = distributed.gather_rows(step.logits, n, self.world)
        return StepResult(loss, logits, step.l2)

    def eval_model(self) -> nn.Module:
        distributed.broadcast_buffers(self.inner.eval_model(), self.world)
        return self._eval

    def param_count(self) -> int:
        return self.inner.param_count()

    def weights(self) -> dict[str, Any]:
        return self.inner.weights()

    def state(self) -> dict[str, Any]:
        return self.inner.state()

    def load_state(self, payload: dict[str, Any]) -> None:
        self.inner.load_state(payload)

    def running(self) -> contextlib.AbstractContextManager:
        return self.inner.running()
