"""What every augmentation is: a batch op with a shape rule and a torchvision v2 twin.

An op maps a Batch (images in [0, 1] before normalisation, plus labels) to a new Batch.
Image ops leave labels alone; label-mixing ops (mixup, cutmix) turn them into class
probabilities. The same op object also says which torchvision.transforms.v2 transform
does its job one image at a time, which is how the file-backed loader applies it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, Field

from cnnlab.lazy import lazy
from cnnlab.registry import Registry

torch = lazy("torch")
T = lazy("torchvision.transforms.v2")

AUGMENTATIONS = Registry("augmentation", "augment[]", context=("num_classes",), data_params=1)

Shape = tuple[int, int, int]  # (C, H, W)
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
PositiveInt = Annotated[int, Field(gt=0)]


def _ordered(pair: tuple[float, float]) -> tuple[float, float]:
    if pair[0] > pair[1]:
        raise ValueError(f"must be [low, high] with low <= high, got {list(pair)}")
    return pair


Interval = Annotated[tuple[float, float], AfterValidator(_ordered)]


@dataclass
class Batch:
    """Images (B, C, H, W) as floats in [0, 1], and labels: (B,) class indices or (B, K) probabilities."""

    x: torch.Tensor
    y: torch.Tensor | None


@dataclass
class Rng:
    """Where ops draw randomness: per-sample tensors from `device`, per-batch scalars from `host`.

    `device` is the loader's generator (None: torch's global generator, as in a DataLoader
    worker). `host` is a NumPy generator the loader seeds from `device` once per epoch, so
    per-batch choices (a mixup lambda, an op order) never wait on the GPU.
    """

    device: torch.Generator | None
    host: np.random.Generator


class Augmentation:
    """One configured op; subclasses set the class flags and implement `__call__` or `image`."""

    always: bool = False  # deterministic geometry: also applied at evaluation and prediction
    mixes_labels: bool = False  # works on whole batches and returns (B, K) class probabilities

    def __call__(self, batch: Batch, rng: Rng) -> Batch:
        return Batch(self.image(batch.x, rng), batch.y)

    def image(self, x: torch.Tensor, rng: Rng) -> torch.Tensor:
        """The op on a batch of images."""
        raise NotImplementedError

    def shape(self, chw: Shape) -> Shape:
        """Output (C, H, W) for an input of `chw`; ValueError when the op cannot take it."""
        return chw

    def v2(self, chw: Shape) -> Callable[..., Any]:
        """The torchvision v2 transform doing this to one (C, H, W) float image of shape `chw`."""
        raise NotImplementedError


class ImageOp(Augmentation):
    """An image op from functions: the batched op, its v2 twin and (optionally) a shape rule."""

    def __init__(
        self,
        image: Callable[[torch.Tensor, Rng], torch.Tensor],
        v2: Callable[[Shape], Callable[..., Any]],
        shape: Callable[[Shape], Shape] | None = None,
        always: bool = False,
    ):
        self._image, self._v2, self._shape, self.always = image, v2, shape, always

    def image(self, x: torch.Tensor, rng: Rng) -> torch.Tensor:
        return self._image(x, rng)

    def shape(self, chw: Shape) -> Shape:
        return chw if self._shape is None else self._shape(chw)

    def v2(self, chw: Shape) -> Callable[..., Any]:
        return self._v2(chw)


class PerImage:
    """Run a batched op on one image (a batch of one), for ops torchvision has no twin of.

    Randomness comes from torch's global generator, which the file-backed loader seeds
    per sample, exactly as it does for the torchvision transforms around it. (A plain
    callable, not a torch Module: v2.Compose takes either, and this module imports torch lazily.)
    """

    def __init__(self, op: Augmentation):
        self.op = op

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        host = np.random.default_rng(int(torch.randint(0, 2**62, (1,))))
        return self.op.image(x[None], Rng(None, host))[0]


# ----------------------------------------------------------------------------- helpers for ops


def uniform(n: int, low: float, high: float, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """n draws from U(low, high) on x's device."""
    return torch.rand(n, device=x.device, generator=g, dtype=x.dtype) * (high - low) + low


def chosen(p: float, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """A (B, 1, 1, 1) mask: which samples an op applies to, each with probability p."""
    return (torch.rand(x.shape[0], device=x.device, generator=g) < p).view(-1, 1, 1, 1)


def maybe_apply(p: float, transform: Callable[..., Any]) -> Callable[..., Any]:
    """A v2 transform applied with probability p (torchvision's RandomApply), or always when p == 1."""
    return transform if p >= 1.0 else T.RandomApply([transform], p=p)


def size2(size: int | list[int]) -> tuple[int, int]:
    """An (H, W) pair from `size` or `[h, w]`."""
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])
