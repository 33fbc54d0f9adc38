"""The torch engine: autocast, loss scaling, the explicit L2 penalty, gradient clipping,
torch.compile and the EMA of the weights live here.

With `train.ema`, evaluation (every epoch, and so the choice of best.pt) uses the exponential
moving average of the weights, updated after every optimizer step, BatchNorm running
statistics averaged alike; checkpoints hold those averaged weights under "model" (what
evaluate and predict load), and last.pt keeps the optimizer's own weights under "raw_model"
for resuming.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from cnnlab import distributed
from cnnlab.config import Config
from cnnlab.device import Autocast, amp_dtype
from cnnlab.device import channels_last as use_channels_last
from cnnlab.errors import ConfigError
from cnnlab.models import count_parameters
from cnnlab.training.data_parallel import wrap
from cnnlab.training.engine import StepResult
from cnnlab.training.losses import build_penalty
from cnnlab.training.optim import OPTIMIZERS
from cnnlab.training.param_groups import param_groups
from cnnlab.training.tta import with_tta


class TorchEngine:
    """A torch model trained by a torch optimizer."""

    checkpoint_format = "torch"
    data_parallel = True  # trains under torchrun (distributed.py)
    label = ""

    def __init__(self, cfg: Config, model: nn.Module, device: torch.device, loss_fn: nn.Module, autocast: Autocast):
        t = cfg.train
        _check_compiler(cfg, device)
        self.model, self.loss_fn, self.autocast, self.device = model, loss_fn, autocast, device
        self.optimizer = OPTIMIZERS.build(cfg.optim, params=param_groups(model, cfg.optim), lr=cfg.optim.lr)
        self.hold_eval: list[nn.Module] = []  # layers kept in eval mode while training (train.freeze's BatchNorms)
        # fp16 needs loss scaling so small gradients do not flush to zero; bf16 has fp32's range.
        self.scaler = torch.amp.GradScaler(device.type) if amp_dtype(t.amp, device) == torch.float16 else None
        self.penalty = build_penalty(cfg.loss, model)
        self.grad_clip, self.grad_clip_value = t.grad_clip, t.grad_clip_value
        # Training steps may run a compiled model, wrapped in DDP in a distributed run; it shares its
        # parameters with self.model, whose state_dict (no `_orig_mod.`/`module.` prefixes) is what
        # checkpoints hold.
        self.step_model = wrap(model, device, distributed.current())
        if t.compile:
            self.step_model = torch.compile(self.step_model, mode=t.compile_mode)
        self.ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(t.ema), use_buffers=True)
                    if t.ema is not None else None)
        self._eval = with_tta(self.ema.module if self.ema is not None else model, t.tta)
        self.eval_tag = ", ".join((["ema"] if t.ema is not None else []) + (["tta"] if t.tta != "none" else []))

    # ------------------------------------------------------------------ known before building

    @staticmethod
    def check(cfg: Config) -> None:
        """Everything the torch engine runs; what it refuses is refused by the config schema."""

    @staticmethod
    def device(cfg: Config) -> str:
        return cfg.device

    @staticmethod
    def channels_last(cfg: Config, device: torch.device, model: nn.Module) -> bool:
        return use_channels_last(cfg.train.channels_last, device, model)

    @staticmethod
    def torch_threads(cfg: Config) -> int | None:
        return cfg.train.threads

    @staticmethod
    def inference_model(cfg: Config, model: nn.Module, weights: dict[str, Any], device: torch.device) -> nn.Module:
        model.load_state_dict(weights)  # RuntimeError on a mismatch: the caller says which file
        return model.to(device).eval()

    @staticmethod
    def torch_model(cfg: Config, model: nn.Module, weights: dict[str, Any], device: torch.device) -> nn.Module:
        return TorchEngine.inference_model(cfg, model, weights, device)

    # ------------------------------------------------------------------ the step

    def set_lr(self, lr: float, momentum: float | None = None) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)  # optim.lr_mult / layer_decay (param_groups.py)
            if momentum is not None:
                if "betas" in group:
                    group["betas"] = (momentum, group["betas"][1])
                else:
                    group["momentum"] = momentum

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> StepResult:
        self.model.train()
        for m in self.hold_eval:
            m.eval()
        with self.autocast():
            logits = self.step_model(x)
            loss = self.loss_fn(logits, y)
        total, l2 = loss, None
        if self.penalty is not None:  # in full precision, outside autocast
            l2 = self.penalty()
            total = loss + l2
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(total).backward()
            self.scaler.unscale_(self.optimizer)  # clipping below sees the true gradients
        else:
            total.backward()
        if self.grad_clip_value is not None:
            nn.utils.clip_grad_value_(self.model.parameters(), self.grad_clip_value)
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skipped when unscale_ found inf/NaN gradients
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return StepResult(loss.detach().float(), logits.detach(), None if l2 is None else l2.detach())

    def eval_model(self) -> nn.Module:
        return self._eval

    def param_count(self) -> int:
        return count_parameters(self.model)

    def running(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def probing(self) -> Iterator[TorchProbe]:
        probe = TorchProbe(self.model, self.loss_fn, self.device)
        try:
            yield probe
        finally:
            probe.restore()

    # ------------------------------------------------------------------ state

    def weights(self) -> dict[str, Any]:
        return (self.ema.module if self.ema is not None else self.model).state_dict()

    def state(self) -> dict[str, Any]:
        ema = {} if self.ema is None else {"raw_model": self.model.state_dict(), "ema_updates": self.ema.n_averaged}
        return {"model": self.weights(), **ema, "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def load_state(self, payload: dict[str, Any]) -> None:
        if self.ema is not None:
            self.model.load_state_dict(payload["raw_model"])
            self.ema.module.load_state_dict(payload["model"])
            self.ema.n_averaged.copy_(payload["ema_updates"])
        else:
            self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.scaler is not None and payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])


class TorchProbe:
    """Engine.probing()'s access for a torch model (the eager module: a compiled step model
    shares its parameters). Gradients come from torch.autograd.grad, so no parameter's .grad
    is written; autocast is off: the probe measures in full precision, and fp16 gradients
    would need the loss scaling that belongs to the optimizer step. Dropout draws from torch's
    generators (the CPU's and the device's): every pass starts from their state on entry, so
    it draws the masks the training step will draw, and they are left in that state."""

    def __init__(self, model: nn.Module, loss_fn: nn.Module, device: torch.device):
        self.model, self.loss_fn = model, loss_fn
        self.was_training = model.training
        self.params = [p for p in model.parameters() if p.requires_grad]
        with torch.no_grad():
            self.start = [p.detach().clone() for p in self.params]
            # Train-mode forwards move BN running statistics (and num_batches_tracked): put back on exit.
            self.buffers = [(b, b.detach().clone()) for b in model.buffers()]
        self.device = device
        self.accelerator = None if device.type == "cpu" else torch.get_device_module(device.type)
        self.rng = torch.get_rng_state()
        self.device_rng = self.accelerator.get_rng_state(device) if self.accelerator is not None else None

    def _rewind(self) -> None:
        torch.set_rng_state(self.rng)
        if self.accelerator is not None:
            self.accelerator.set_rng_state(self.device_rng, self.device)

    def gradient(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
        self._rewind()
        self.model.train()
        with torch.enable_grad():
            loss = self.loss_fn(self.model(x), y)
            grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        flat = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                          for g, p in zip(grads, self.params)])
        return float(loss.detach()), flat

    def shift(self, delta: torch.Tensor) -> None:
        offset = 0
        with torch.no_grad():
            for p, p0 in zip(self.params, self.start):
                n = p0.numel()
                p.copy_(p0 + delta[offset:offset + n].view(p0.shape).to(p0.dtype))
                offset += n

    def restore(self) -> None:
        with torch.no_grad():
            for p, p0 in zip(self.params, self.start):
                p.copy_(p0)
            for b, b0 in self.buffers:
                b.copy_(b0)
        self.model.train(self.was_training)
        self._rewind()


def _check_compiler(cfg: Config, device: torch.device) -> None:
    """torch.compile on the CPU writes C++: fail now, not at the first step, when there is no compiler."""
    if not cfg.train.compile or device.type != "cpu":
        return
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError:  # a private module that may move: look for the usual names instead
        found = any(shutil.which(c) for c in (os.environ.get("CXX"), "g++", "clang++", "c++") if c)
    else:
        try:
            found = shutil.which(get_cpp_compiler()) is not None
        except Exception:  # torch raises its own error types when it finds no compiler
            found = False
    if not found:
        raise ConfigError("train.compile: torch.compile on the CPU needs a C++ compiler (g++ or clang++) and "
                          "none was found; install one or set train.compile=false")
