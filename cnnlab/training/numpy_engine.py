"""`engine: scratch`: the NumPy engine (cnnlab.scratch) behind the same loop as torch.

The network is first built by the torch model builder with the run's seed, then copied layer
by layer into the NumPy engine, so both engines start from the same weights and their curves
can be laid side by side. Data, augmentation, schedules, metrics, callbacks, curves and the
run directory are shared with the torch path; only the training step and the state its
checkpoints hold (.npz, read with allow_pickle=False) belong here. The learning rate comes
from the run's Schedule, like the torch engine's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab import scratch
from cnnlab.config import Config
from cnnlab.data.augment import mixes_labels
from cnnlab.device import Autocast
from cnnlab.errors import ConfigError
from cnnlab.models import MODELS
from cnnlab.training.engine import StepResult
from cnnlab.usercode.imports import is_reference, short

LAYERS = "Conv2d, BatchNorm1d/2d, ReLU, LeakyReLU, Sigmoid, Tanh, Softplus, Dropout, MaxPool2d, AvgPool2d, Flatten, Linear"


class NumpyEngine:
    """A cnnlab.scratch network trained by the engine's own SGD or Adam."""

    checkpoint_format = "npz"
    data_parallel = False  # one process only: no torchrun
    eval_tag = ""
    label = "engine scratch (NumPy)"

    def __init__(self, cfg: Config, model: nn.Module, device: torch.device, loss_fn: nn.Module, autocast: Autocast):
        self.dropout_rng = np.random.default_rng(cfg.seed)
        self.net, _ = convert(model, self.dropout_rng)
        self.optimizer = _optimizer(cfg, self.net)
        self.loss = _loss(cfg)
        self.model = ScratchModel(self.net)
        self.grad_clip, self.grad_clip_value = cfg.train.grad_clip, cfg.train.grad_clip_value
        self.threads = cfg.train.threads

    # ------------------------------------------------------------------ known before building

    @staticmethod
    def check(cfg: Config) -> None:
        """Refuse, before any work, the options the NumPy engine does not implement."""
        t = cfg.train
        if is_reference(cfg.model.name) or MODELS.get(cfg.model.name).origin is not None:
            raise ConfigError(f"model.name: '{short(cfg.model.name)}' is your own nn.Module, which has no NumPy twin; "
                              "engine: scratch trains cnnlab's lenet and cnn models only: use engine: torch")
        unsupported = {
            "device": cfg.device in ("cuda", "mps"),
            "train.amp": t.amp in ("bf16", "fp16"),
            "train.ema": t.ema is not None,
            "train.compile": t.compile,
            "train.tta": t.tta != "none",
            "loss.l2": bool(cfg.loss.l2),
            "loss.class_weights": cfg.loss.class_weights is not None,
            "train.freeze": t.freeze is not None,
            "optim.lr_mult": bool(cfg.optim.lr_mult),
            "optim.layer_decay": cfg.optim.layer_decay is not None,
            "augment": mixes_labels(cfg.augment) is not None,
        }
        for key, bad in unsupported.items():
            if bad:
                raise ConfigError(f"{key}: not available with engine: scratch (the NumPy engine); "
                                  "remove it or use engine: torch")
        if cfg.optim.name not in ("sgd", "adam"):
            raise ConfigError(f"optim.name: engine: scratch implements sgd and adam, not '{cfg.optim.name}'")
        opts = cfg.optim.model_dump()
        if cfg.optim.name == "sgd" and opts.get("dampening"):
            raise ConfigError("optim.dampening: engine: scratch implements SGD without dampening")
        if cfg.optim.name == "adam" and opts.get("amsgrad"):
            raise ConfigError("optim.amsgrad: engine: scratch implements plain Adam")
        if cfg.loss.name not in ("cross_entropy", "hinge"):
            raise ConfigError(f"loss.name: engine: scratch implements cross_entropy and hinge, not '{cfg.loss.name}'")
        if cfg.loss.name == "hinge" and cfg.loss.model_dump().get("p", 1) != 1:
            raise ConfigError("loss.p: engine: scratch implements the hinge loss with p=1")

    @staticmethod
    def channels_last(cfg: Config, device: torch.device, model: nn.Module) -> bool:
        return False  # NumPy arrays are NCHW

    @staticmethod
    def device(cfg: Config) -> str:
        return "cpu"  # NumPy computes on the CPU, so batches are prepared there

    @staticmethod
    def torch_threads(cfg: Config) -> int | None:
        return None  # running() limits torch while the engine trains, and only then

    @staticmethod
    def inference_model(cfg: Config, model: nn.Module, weights: dict[str, Any], device: torch.device) -> ScratchModel:
        net, _ = convert(model, np.random.default_rng(cfg.seed))
        try:
            net.load_state_dict(weights)
        except (KeyError, ValueError) as e:
            raise RuntimeError(str(e)) from None  # the caller names the file
        return ScratchModel(net).eval()

    @staticmethod
    def torch_model(cfg: Config, model: nn.Module, weights: dict[str, Any], device: torch.device) -> nn.Module:
        """The engine's weights put back into the torch module they were converted from."""
        _, names = convert(model, np.random.default_rng(cfg.seed))
        missing = [k for k in names if k not in weights]
        if missing:
            raise RuntimeError(f"no '{missing[0]}' in the checkpoint")
        own = model.state_dict()
        state = {}
        for ours, theirs in names.items():
            if theirs in own:  # a torch conv without bias (BN follows) has none to take
                state[theirs] = torch.as_tensor(np.asarray(weights[ours])).reshape(own[theirs].shape).to(own[theirs].dtype)
        left = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
        if left:
            raise RuntimeError(f"the checkpoint has nothing for '{left[0]}'")
        model.load_state_dict(state, strict=False)
        return model.to(device).eval()

    # ------------------------------------------------------------------ the step

    def set_lr(self, lr: float, momentum: float | None = None) -> None:
        self.optimizer.lr = lr
        if momentum is not None:
            if isinstance(self.optimizer, scratch.Adam):
                self.optimizer.beta1 = momentum
            else:
                self.optimizer.momentum = momentum

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> StepResult:
        xb = np.ascontiguousarray(x.numpy(), dtype=np.float32)
        logits = self.net.forward(xb, training=True)
        loss = self.loss.forward(logits, y.numpy())
        # The data needs no gradient: the first layer computes only its parameter gradients.
        self.net.backward_params_only(self.loss.backward().astype(np.float32, copy=False))
        self._clip()
        self.optimizer.step()
        return StepResult(torch.tensor(loss, dtype=torch.float64), torch.from_numpy(logits))

    def _clip(self) -> None:
        grads = [p.grad for p in self.net.parameters()]
        if self.grad_clip_value is not None:
            for g in grads:
                np.clip(g, -self.grad_clip_value, self.grad_clip_value, out=g)
        if self.grad_clip is not None:  # as torch.nn.utils.clip_grad_norm_
            norm = float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads)))
            scale = self.grad_clip / (norm + 1e-6)
            if scale < 1:
                for g in grads:
                    g *= scale

    def eval_model(self) -> ScratchModel:
        return self.model

    def param_count(self) -> int:
        return self.model.num_parameters()

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        # torch only prepares batches here; idle torch threads would spin and steal NumPy's cores.
        # Set for the loop and put back after it: set once for the process, it stayed at 1 for
        # every torch run after this one (a study's in-process worker, a test session).
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with scratch.blas_threads(self.threads):
                yield
        finally:
            torch.set_num_threads(before)

    @contextlib.contextmanager
    def probing(self) -> Iterator[NumpyProbe]:
        probe = NumpyProbe(self.net, self.loss, self.dropout_rng)
        try:
            yield probe
        finally:
            probe.restore()

    # ------------------------------------------------------------------ state

    def weights(self) -> dict[str, Any]:
        return self.net.state_dict()

    def state(self) -> dict[str, Any]:
        return {"model": self.net.state_dict(),
                "optim": {k: np.asarray(v) for k, v in self.optimizer.state_dict().items()},
                "dropout_rng": self.dropout_rng.bit_generator.state}

    def load_state(self, payload: dict[str, Any]) -> None:
        self.net.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optim"])
        self.dropout_rng.bit_generator.state = payload["dropout_rng"]


class NumpyProbe:
    """Engine.probing()'s access for the NumPy network: its own forward and backward, the
    flat gradient handed over as a torch tensor sharing the array's memory. Every pass starts
    from the dropout generator's state on entry (the masks the training step will draw)."""

    def __init__(self, net: scratch.Sequential, loss: scratch.SoftmaxCrossEntropy | scratch.MultiClassHinge,
                 dropout_rng: np.random.Generator):
        self.net, self.loss, self.dropout_rng = net, loss, dropout_rng
        self.rng = dropout_rng.bit_generator.state  # a copy
        self.params = net.parameters()
        self.start = [p.data.copy() for p in self.params]
        # Train-mode forwards move BN running statistics; backward passes replace gradients.
        self.buffers = {k: v.copy() for k, v in net.buffers.items()}
        self.grads = [{k: v.copy() for k, v in layer.grads.items()} for layer in net.layers]

    def gradient(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
        self.dropout_rng.bit_generator.state = self.rng
        logits = self.net.forward(np.ascontiguousarray(x.numpy(), dtype=np.float32), training=True)
        loss = self.loss.forward(logits, y.numpy())
        self.net.backward_params_only(self.loss.backward().astype(np.float32, copy=False))
        flat = np.concatenate([p.grad.ravel() for p in self.params]).astype(np.float32, copy=False)
        return float(loss), torch.from_numpy(flat)

    def shift(self, delta: torch.Tensor) -> None:
        d = delta.numpy()
        offset = 0
        for p, p0 in zip(self.params, self.start):
            np.copyto(p.data, p0 + d[offset:offset + p0.size].reshape(p0.shape))  # in place: the optimizer holds them
            offset += p0.size

    def restore(self) -> None:
        for p, p0 in zip(self.params, self.start):
            np.copyto(p.data, p0)
        live = self.net.buffers
        for k, v in self.buffers.items():
            np.copyto(live[k], v)
        for layer, grads in zip(self.net.layers, self.grads):
            layer.grads.update(grads)
        self.dropout_rng.bit_generator.state = self.rng


def _optimizer(cfg: Config, net: scratch.Sequential) -> scratch.SGD | scratch.Adam:
    """The engine's optimizer with the config's options (checked by NumpyEngine.check)."""
    o = cfg.optim.model_dump()
    if cfg.optim.name == "sgd":
        return scratch.SGD(net.parameters(), lr=cfg.optim.lr, momentum=o["momentum"],
                           weight_decay=o["weight_decay"], nesterov=o["nesterov"])
    return scratch.Adam(net.parameters(), lr=cfg.optim.lr, betas=tuple(o["betas"]), eps=o["eps"],
                        weight_decay=o["weight_decay"])


def _loss(cfg: Config) -> scratch.SoftmaxCrossEntropy | scratch.MultiClassHinge:
    o = cfg.loss.model_dump()
    if cfg.loss.name == "hinge":
        return scratch.MultiClassHinge(margin=o["margin"])
    return scratch.SoftmaxCrossEntropy(label_smoothing=o["label_smoothing"])


# ----------------------------------------------------------------------------- torch -> NumPy


def _leaves(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The layers of nested nn.Sequential containers, in order, with their state_dict prefixes."""
    if isinstance(module, nn.Sequential):
        out = []
        for name, child in module.named_children():
            out += _leaves(child, f"{prefix}{name}.")
        return out
    return [(prefix.rstrip("."), module)]


def convert(model: nn.Module, rng: np.random.Generator) -> tuple[scratch.Sequential, dict[str, str]]:
    """A NumPy Sequential computing what `model` computes, with its weights.

    Returns the network and a map from the engine's parameter names to the torch model's.
    """
    net = scratch.Sequential()
    names: dict[str, str] = {}
    for path, m in _leaves(model):
        layer = _layer(m, path, rng)
        index = len(net)
        net.append(layer)
        for key in list(layer.params) + list(layer.buffers):
            names[f"{index}.{key}"] = f"{path}.{key}"
        torch_state = {k: v.detach().cpu().numpy() for k, v in m.state_dict().items()}
        if "bias" in layer.params and "bias" not in torch_state:
            torch_state["bias"] = np.zeros_like(layer.params["bias"])  # torch conv without bias (BN follows)
        layer.load_state_dict(torch_state)
    return net, names


def _layer(m: nn.Module, path: str, rng: np.random.Generator) -> scratch.Layer:
    """The engine's layer for one torch module, or a ConfigError."""
    if isinstance(m, nn.Identity):
        return scratch.Dropout(0.0)  # an identity that keeps layer indices (and so names) aligned
    if isinstance(m, nn.Conv2d) and m.groups == 1 and m.dilation == (1, 1) and m.padding_mode == "zeros" \
            and not isinstance(m.padding, str):
        return scratch.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, rng=rng)
    if isinstance(m, nn.Linear):
        return scratch.Linear(m.in_features, m.out_features, rng=rng)
    if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and m.affine and m.track_running_stats:
        cls = scratch.BatchNorm2d if isinstance(m, nn.BatchNorm2d) else scratch.BatchNorm1d
        return cls(m.num_features, eps=m.eps, momentum=m.momentum)
    if isinstance(m, nn.ReLU):
        return scratch.ReLU()
    if isinstance(m, nn.LeakyReLU):
        return scratch.LeakyReLU(m.negative_slope)
    if isinstance(m, nn.Sigmoid):
        return scratch.Sigmoid()
    if isinstance(m, nn.Tanh):
        return scratch.Tanh()
    if isinstance(m, nn.Softplus):
        return scratch.Softplus(m.beta, m.threshold)
    if type(m) is nn.Dropout:
        return scratch.Dropout(m.p, rng=rng)
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) and not m.ceil_mode and m.padding in (0, (0, 0)) \
            and getattr(m, "dilation", 1) in (1, (1, 1)):
        cls = scratch.MaxPool2d if isinstance(m, nn.MaxPool2d) else scratch.AvgPool2d
        return cls(m.kernel_size, m.stride)
    if isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1:
        return scratch.Flatten()
    what = type(m).__name__
    raise ConfigError(f"model: engine: scratch cannot run layer '{path}' ({what}); it runs plain stacks of "
                      f"{LAYERS} (e.g. model.name lenet, or cnn without conv_dropout/global_pool)")


class ScratchModel:
    """The engine's network as cnnlab's evaluation code sees a model: torch tensors in and out."""

    def __init__(self, net: scratch.Sequential):
        self.net = net
        self.training = True

    def train(self, mode: bool = True) -> ScratchModel:
        self.training = mode
        return self

    def eval(self) -> ScratchModel:
        return self.train(False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        batch = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.net.forward(batch, training=self.training))

    def state_dict(self) -> dict[str, np.ndarray]:
        return self.net.state_dict()

    def num_parameters(self) -> int:
        return int(sum(p.data.size for p in self.net.parameters()))
