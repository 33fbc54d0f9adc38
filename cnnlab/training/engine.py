"""The engine seam: what the one training loop (trainer.py) needs from an engine.

An engine owns the network, its optimizer and everything that differs between computing
with torch and with NumPy: the training step (forward, loss, backward, clipping, update),
the model evaluation calls, and the state its checkpoints hold. The loop owns the rest:
batches, schedule, metrics, callbacks, checkpoints' common part and the run directory.
`probing()` lets the loss-landscape probe (probe.py) move the weights and take gradients
without changing the run: everything it touches is put back bit for bit.
Two engines implement it: torch_engine.TorchEngine and numpy_engine.NumpyEngine; engines.py
is the one place that picks one.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    import torch

    from cnnlab.config import Config


class StepResult(NamedTuple):
    """One training step, as tensors on the batch's device (detached)."""

    loss: torch.Tensor  # the data loss of the batch (0-d)
    logits: torch.Tensor  # (B, K)
    l2: torch.Tensor | None = None  # the explicit L2 penalty (loss.l2), when there is one


class ProbeAccess(Protocol):
    """The network as the landscape probe sees it inside Engine.probing(): flat vectors of all
    trainable parameters, in one fixed order, as float32 torch tensors on the batch's device."""

    def gradient(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
        """The data loss of a batch at the current weights (train mode, full precision) and its
        gradient. Every call draws the random numbers (dropout masks) the next training step will
        draw, so the probe looks at the same function the step descends."""

    def shift(self, delta: torch.Tensor) -> None:
        """Set the weights to those probing() began with plus `delta`."""


class Engine(Protocol):
    """A network being trained, as the loop sees it."""

    checkpoint_format: str  # "torch" (.pt) or "npz" (.npz): see cnnlab/checkpoints.py
    eval_tag: str  # how evaluation differs from the trained weights ("ema", "tta"), for the epoch line

    def set_lr(self, lr: float, momentum: float | None = None) -> None:
        """The learning rate (and momentum or beta1, when a schedule cycles it) of the next step."""

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> StepResult:
        """Forward, loss, backward and one optimizer update on a batch."""

    def eval_model(self) -> Any:
        """What evaluation calls on a batch: torch tensors in, logits out (with .train/.eval)."""

    def param_count(self) -> int:
        """Trainable parameters of the network."""

    def weights(self) -> dict[str, Any]:
        """The weights evaluation uses, as best checkpoints hold them under "model"."""

    def state(self) -> dict[str, Any]:
        """What last checkpoints hold of the engine: weights, optimizer, engine-owned generators."""

    def load_state(self, payload: dict[str, Any]) -> None:
        """Continue from a last checkpoint's payload."""

    def running(self) -> contextlib.AbstractContextManager:
        """The context the training loop runs in (the NumPy engine limits BLAS threads)."""

    def probing(self) -> contextlib.AbstractContextManager[ProbeAccess]:
        """A ProbeAccess; on leaving, the weights, buffers (BN running statistics), gradients and
        every random generator the engine draws from are as they were on entry, bit for bit.
        The optimizer's state is neither read nor written."""


class EngineType(Protocol):
    """What is known of an engine before it is built (config checks, threads, inference)."""

    @staticmethod
    def check(cfg: Config) -> None:
        """Refuse, with a ConfigError, options this engine cannot run."""

    label: str  # words for the run's banner ("" for the default engine)
    data_parallel: bool  # whether it trains in several processes (torchrun; train/data_parallel.py)

    @staticmethod
    def channels_last(cfg: Config, device: torch.device, model: torch.nn.Module) -> bool:
        """Whether the model and batches use the channels_last memory format."""

    @staticmethod
    def device(cfg: Config) -> str:
        """The `device:` setting a run on this engine uses (the NumPy engine: always the CPU)."""

    @staticmethod
    def torch_threads(cfg: Config) -> int | None:
        """torch's CPU threads for a run on this engine (None: leave them)."""

    @staticmethod
    def inference_model(cfg: Config, model: torch.nn.Module, weights: dict[str, Any], device: torch.device) -> Any:
        """The trained network in evaluation mode, from the torch model the builder made and saved weights."""

    @staticmethod
    def torch_model(cfg: Config, model: torch.nn.Module, weights: dict[str, Any], device: torch.device) -> torch.nn.Module:
        """`model` (the torch module config.yaml builds) holding a checkpoint's weights, in eval
        mode: what the analyses (kernels, feature maps, landscapes) work on for either engine."""
