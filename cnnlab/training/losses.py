"""Loss functions, registered under the name used in `loss.name`, and the explicit L2 penalty."""

from __future__ import annotations

from typing import Any, Literal

from cnnlab.config import LossConfig
from cnnlab.errors import ConfigError
from cnnlab.lazy import lazy
from cnnlab.registry import Registry
from cnnlab.usercode.blame import add_code_of, blame
from cnnlab.usercode.imports import short

torch = lazy("torch")
nn = lazy("torch.nn")

LOSSES = Registry("loss", "loss", context=("num_classes", "class_counts"), data_params=2)
# Losses that accept (B, K) class probabilities as targets, as mixup and cutmix produce;
# a config combining any other loss with them is rejected before training. A user's loss says it
# does with an attribute `soft_targets = True` on its class or function.
SOFT_TARGET_LOSSES: set[str] = {"cross_entropy"}


def takes_soft_targets(name: str) -> bool:
    if name in SOFT_TARGET_LOSSES:
        return True
    entry = LOSSES.get(name)
    return entry.origin is not None and bool(getattr(entry.source, "soft_targets", False))


@LOSSES.register("cross_entropy", context=("num_classes",))
def cross_entropy(num_classes: int, label_smoothing: float = 0.0) -> nn.Module:
    """Softmax cross-entropy, optionally with label smoothing; targets may be class indices or probabilities."""
    if not 0.0 <= label_smoothing < 1.0:
        raise ConfigError(f"loss.label_smoothing: must be in [0, 1), got {label_smoothing}")
    return nn.CrossEntropyLoss(label_smoothing=label_smoothing)


@LOSSES.register("hinge", context=("num_classes",))
def hinge(num_classes: int, margin: float = 1.0, p: Literal[1, 2] = 1) -> nn.Module:
    """Multi-class hinge (Weston-Watkins): mean over j != y of max(0, margin - x_y + x_j)**p / classes."""
    if margin <= 0:
        raise ConfigError(f"loss.margin: must be > 0, got {margin}")
    return nn.MultiMarginLoss(p=p, margin=margin)


def class_weights(loss: LossConfig, counts: list[int]) -> list[float]:
    """One weight per class from loss.class_weights (see its docstring in cnnlab/config.py)."""
    k = len(counts)
    spec = loss.class_weights
    if isinstance(spec, list):
        if len(spec) != k or any(w < 0 for w in spec) or not any(w > 0 for w in spec):
            raise ConfigError(f"loss.class_weights: give {k} weights (one per class, >= 0, not all 0), got {spec}")
        return [float(w) for w in spec]
    if any(n == 0 for n in counts):
        empty = [i for i, n in enumerate(counts) if n == 0]
        raise ConfigError(f"loss.class_weights: {spec} needs training images of every class; class(es) {empty} have none")
    if spec == "balanced":  # inverse frequency, scaled so the average image weighs 1
        total = sum(counts)
        return [total / (k * n) for n in counts]
    beta = loss.class_weights_beta  # effective number of images (Cui et al. 2019), scaled to sum to K
    raw = [(1 - beta) / (1 - beta**n) for n in counts]
    return [k * w / sum(raw) for w in raw]


def l2_parameters(model: nn.Module, which: Literal["weights", "all"]) -> list[nn.Parameter]:
    """'weights': the weight of every conv and linear layer; 'all': every trainable parameter."""
    if which == "all":
        return [p for p in model.parameters() if p.requires_grad]
    layers = (nn.modules.conv._ConvNd, nn.Linear)
    return [m.weight for m in model.modules() if isinstance(m, layers) and m.weight.requires_grad]


class L2Penalty:
    """l2/2 * sum of squared parameters: its gradient adds l2 * w, as SGD weight decay does."""

    def __init__(self, params: list[nn.Parameter], l2: float):
        self.params = params
        self.l2 = l2

    def __call__(self) -> torch.Tensor:
        # Sum of squares, not norm()**2: the norm's gradient is NaN at an all-zero tensor.
        return 0.5 * self.l2 * torch.stack([p.square().sum() for p in self.params]).sum()


def build_penalty(loss: LossConfig, model: nn.Module) -> L2Penalty | None:
    """The L2 penalty `loss.l2` asks for, or None when it is 0."""
    if loss.l2 == 0:
        return None
    params = l2_parameters(model, loss.l2_params)
    if not params:
        raise ConfigError(f"loss.l2_params: '{loss.l2_params}' selects no parameters of this model; use 'all'")
    return L2Penalty(params, loss.l2)


def build_loss(loss: LossConfig, num_classes: int, class_counts: list[int] | None = None) -> Any:
    """The data loss `loss:` names, for this many classes. A user's own loss (a class, or a
    function(logits, targets, ...)) is tried on a small batch first: it must return a scalar that
    depends on the logits, or one line says what it returned instead."""
    counts = list(class_counts) if class_counts is not None else [1] * num_classes
    fn = LOSSES.build(loss, num_classes=num_classes, class_counts=counts)
    if LOSSES.get(loss.name).origin is None:
        if loss.class_weights is not None:
            fn.weight = torch.tensor(class_weights(loss, counts), dtype=torch.float32)  # nn.*Loss's weight buffer
        return fn
    if loss.class_weights is not None:
        raise ConfigError(f"loss.class_weights: the built-in losses only; your loss '{short(loss.name)}' gets "
                          "class_counts (the training images of each class) and can weigh classes itself")
    label = f"loss.name: '{short(loss.name)}'"
    if not callable(fn):
        raise ConfigError(f"{label} built a {type(fn).__name__}, which cannot be called as loss(logits, targets)")
    add_code_of(fn)
    logits = torch.zeros(2, num_classes, requires_grad=True)
    targets = torch.arange(2) % num_classes
    try:
        value = fn(logits, targets)
    except Exception as e:
        err = blame(e, f"{label} failed on logits of shape (2, {num_classes}) and class-index targets {targets.tolist()}")
        if err is None:
            raise
        raise err from None
    if not isinstance(value, torch.Tensor):
        raise ConfigError(f"{label} returned a {type(value).__name__}, expected a scalar tensor (a 0-d torch.Tensor)")
    if value.dim() != 0:
        raise ConfigError(f"{label} returned a tensor of shape {tuple(value.shape)}, expected a scalar (0-d); reduce it, "
                          "e.g. with .mean()")
    if not value.requires_grad:
        raise ConfigError(f"{label} returned a value that does not depend on the logits (no gradient flows back "
                          "through it); compute it from the logits with torch operations")
    return fn
