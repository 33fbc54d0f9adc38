"""`engine: scratch`: the NumPy engine (cnnlab.scratch) driven by the same runner and loop.

The network is first built by the torch model builder with the run's seed, then copied layer
by layer into the NumPy engine, so both engines start from the same weights and their curves
can be laid side by side. Data, augmentation, schedules, metrics, callbacks, curves and the
run directory are shared with the torch path; only the training step and the checkpoints
(.npz, read with allow_pickle=False) belong to the engine. The learning rate comes from the
run's torch schedule, which drives a stand-in torch optimizer holding no model parameters.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab import scratch
from cnnlab.config import Config
from cnnlab.data.augment import mixes_labels
from cnnlab.errors import ConfigError, UserError
from cnnlab.scratch.io import load_npz, save_npz
from cnnlab.train.trainer import Trainer, TrainState

FORMAT = "cnnlab-scratch-checkpoint/1"
LAYERS = "Conv2d, BatchNorm1d/2d, ReLU, LeakyReLU, Sigmoid, Tanh, Softplus, Dropout, MaxPool2d, AvgPool2d, Flatten, Linear"


# ----------------------------------------------------------------------------- what it supports


def check_config(cfg: Config) -> None:
    """Refuse, before any work, the options the NumPy engine does not implement."""
    t = cfg.train
    unsupported = {
        "device": cfg.device in ("cuda", "mps"),
        "train.amp": t.amp in ("bf16", "fp16"),
        "train.ema": t.ema is not None,
        "train.compile": t.compile,
        "train.tta": t.tta != "none",
        "loss.l2": bool(cfg.loss.l2),
        "augment": mixes_labels(cfg.augment) is not None,
    }
    for key, bad in unsupported.items():
        if bad:
            raise ConfigError(f"{key}: not available with engine: scratch (the NumPy engine); "
                              "remove it or use engine: torch")
    if cfg.optim.name not in ("sgd", "adam"):
        raise ConfigError(f"optim.name: engine: scratch implements sgd and adam, not '{cfg.optim.name}'")
    opts = cfg.options("optim", "name")
    if cfg.optim.name == "sgd" and opts.get("dampening"):
        raise ConfigError("optim.dampening: engine: scratch implements SGD without dampening")
    if cfg.optim.name == "adam" and opts.get("amsgrad"):
        raise ConfigError("optim.amsgrad: engine: scratch implements plain Adam")
    if cfg.loss.name not in ("cross_entropy", "hinge"):
        raise ConfigError(f"loss.name: engine: scratch implements cross_entropy and hinge, not '{cfg.loss.name}'")
    if cfg.loss.name == "hinge" and cfg.options("loss", "name").get("p", 1) != 1:
        raise ConfigError("loss.p: engine: scratch implements the hinge loss with p=1")


def make_optimizer(cfg: Config, net: scratch.Sequential) -> scratch.SGD | scratch.Adam:
    """The engine's optimizer with the config's options (checked by check_config)."""
    o = cfg.options("optim", "name")
    if cfg.optim.name == "sgd":
        return scratch.SGD(net.parameters(), lr=cfg.optim.lr, momentum=o["momentum"],
                           weight_decay=o["weight_decay"], nesterov=o["nesterov"])
    return scratch.Adam(net.parameters(), lr=cfg.optim.lr, betas=tuple(o["betas"]), eps=o["eps"],
                        weight_decay=o["weight_decay"])


def make_loss(cfg: Config) -> scratch.SoftmaxCrossEntropy | scratch.MultiClassHinge:
    o = cfg.options("loss", "name")
    if cfg.loss.name == "hinge":
        return scratch.MultiClassHinge(margin=o["margin"])
    return scratch.SoftmaxCrossEntropy(label_smoothing=o["label_smoothing"])


def stand_in_optimizer(lr: float) -> torch.optim.Optimizer:
    """A torch optimizer over one unused tensor: the run's torch schedule sets its lr each step."""
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)


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


# ----------------------------------------------------------------------------- the step


class ScratchTrainer(Trainer):
    """The shared loop with the NumPy engine's training step and .npz checkpoints."""

    def __init__(self, *, net: scratch.Sequential, engine_optimizer: Any, engine_loss: Any,
                 dropout_rng: np.random.Generator, **kwargs: Any):
        self.net, self.engine_optimizer, self.engine_loss = net, engine_optimizer, engine_loss
        self.dropout_rng = dropout_rng
        super().__init__(model=ScratchModel(net), **kwargs)  # type: ignore[arg-type]

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        self.reporter.start_epoch(epoch)
        loss_sum, correct, seen = 0.0, 0, 0
        pending: list[torch.Tensor] = []
        for x, y in self.train_loader:
            xb = np.ascontiguousarray(x.numpy(), dtype=np.float32)
            yb = y.numpy()
            logits = self.net.forward(xb, training=True)
            loss = self.engine_loss.forward(logits, yb)
            # The data needs no gradient: the first layer computes only its parameter gradients.
            self.net.backward_params_only(self.engine_loss.backward().astype(np.float32, copy=False))
            self._clip()
            self.engine_optimizer.lr = self.optimizer.param_groups[0]["lr"]
            self.engine_optimizer.step()
            self.optimizer.step()  # the stand-in: keeps torch's schedulers' step order happy
            self.schedule.after_batch()
            loss_sum += loss * len(yb)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(yb)
            pending.append(torch.tensor(loss))
            if len(pending) >= self.check_every:
                self._flush(pending, epoch)
        self._flush(pending, epoch)
        self.reporter.close()
        return {"train_loss": loss_sum / seen, "train_acc": correct / seen}

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

    # ------------------------------------------------------------------ checkpoints

    def save_best(self, epoch: int, metrics: dict[str, Any]) -> None:
        meta = {"format": FORMAT, **self.meta, "epoch": epoch, "metrics": metrics}
        save_npz(self.run_dir / "best.npz", {**_prefixed("model", self.net.state_dict()), "meta": _text(meta)})

    def save_last(self) -> None:
        s = self.state
        state = {
            "state": {"epoch": s.epoch, "history": s.history, "best_value": s.best_value,
                      "best_epoch": s.best_epoch, "elapsed": s.elapsed, "stop": s.stop},
            "step_losses": s.step_losses,
            "schedule": self.schedule.state_dict(),
            "stand_in": self.optimizer.state_dict()["param_groups"],
            "dropout_rng": self.dropout_rng.bit_generator.state,
            "callbacks": {cb.state_key: cb.state_dict() for cb in self._stateful()},
        }
        arrays = {**_prefixed("model", self.net.state_dict()),
                  **_prefixed("optim", {k: np.asarray(v) for k, v in self.engine_optimizer.state_dict().items()}),
                  "data_rng": self.generator.get_state().numpy(), "meta": _text({"format": FORMAT, **self.meta}),
                  "state": _text(state)}
        save_npz(self.run_dir / "last.npz", arrays)

    def restore_npz(self, path: Path) -> None:
        """Continue from last.npz exactly where it stopped."""
        arrays = read_checkpoint(path)
        self.net.load_state_dict(_unprefixed("model", arrays))
        self.engine_optimizer.load_state_dict(_unprefixed("optim", arrays))
        st = json.loads(str(arrays["state"]))
        self.schedule.load_state_dict(st["schedule"])
        groups = self.optimizer.state_dict()
        groups["param_groups"] = st["stand_in"]
        self.optimizer.load_state_dict(groups)
        self.dropout_rng.bit_generator.state = st["dropout_rng"]
        self.generator.set_state(torch.from_numpy(arrays["data_rng"].copy()))
        for cb in self._stateful():
            if cb.state_key in st["callbacks"]:
                cb.load_state_dict(st["callbacks"][cb.state_key])
        s = st["state"]
        self.state = TrainState(epoch=s["epoch"], history=s["history"], step_losses=st["step_losses"],
                                best_value=s["best_value"], best_epoch=s["best_epoch"], elapsed=s["elapsed"],
                                stop=s["stop"])


def read_checkpoint(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a scratch checkpoint (no pickles), or a UserError for a damaged file."""
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        arrays = load_npz(path)
        meta = json.loads(str(arrays["meta"]))
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path}: not a cnnlab NumPy-engine checkpoint")
    return arrays


def checkpoint_meta(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    return json.loads(str(arrays["meta"]))


def load_weights(net: scratch.Sequential, arrays: dict[str, np.ndarray], path: Path) -> None:
    try:
        net.load_state_dict(_unprefixed("model", arrays))
    except (KeyError, ValueError) as e:
        raise UserError(f"{path}: weights do not fit the model in config.yaml ({e})") from None


def _prefixed(prefix: str, d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{prefix}/{k}": v for k, v in d.items()}


def _unprefixed(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    start = prefix + "/"
    return {k[len(start):]: v for k, v in arrays.items() if k.startswith(start)}


def _text(obj: Any) -> np.ndarray:
    """Plain data as a 0-d unicode array: stored in .npz without pickling."""
    return np.asarray(json.dumps(obj))
