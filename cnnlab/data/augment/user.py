"""The user's own augmentation ops: any callable on a batch of images, as an Augmentation.

A user op is a class whose instances are called on images, a function `op(images, ...)` whose
other parameters are its options, or a factory returning such a callable; it takes a batch
(B, C, H, W) of floats in [0, 1] (before normalisation) and returns a batch of the same kind,
the size may change. It draws its randomness from torch's generators (torch.rand...), which
cnnlab seeds and keeps in last.pt, so runs stay reproducible and resume exactly. A torchvision
v2 transform (`torchvision.transforms.v2:RandomPerspective`) is applied to each image on its
own, so each draws its own parameters. Ops run in training only, like every random op.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cnnlab.data.augment.base import AUGMENTATIONS, Augmentation, Rng, Shape
from cnnlab.lazy import lazy
from cnnlab.usercode.blame import add_code_of, blame
from cnnlab.usercode.imports import short

torch = lazy("torch")


def build_op(item: dict[str, Any], **context: Any) -> Augmentation:
    """The op an `augment:` item names: a built-in, or the user's callable wrapped as a UserOp."""
    op = AUGMENTATIONS.build(item, **context)
    if isinstance(op, Augmentation):
        return op
    return UserOp(op, short(str(item["name"])))


class UserOp(Augmentation):
    """A user's callable on image batches (see the module docstring)."""

    def __init__(self, fn: Callable[..., Any], label: str):
        if not callable(fn):
            raise ValueError(f"{label} built a {type(fn).__name__}, which cannot be called on a batch of images")
        self.fn, self.label = fn, label
        add_code_of(fn)
        self.per_image = _is_torchvision_transform(fn)

    def image(self, x: torch.Tensor, rng: Rng) -> torch.Tensor:
        return self._run(x, tuple(x.shape))

    def _run(self, x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        try:
            out = torch.stack([self.fn(img) for img in x]) if self.per_image else self.fn(x)
        except Exception as e:
            err = blame(e, f"augment: {self.label} failed on a batch of shape {shape}")
            if err is None:
                raise
            raise err from None
        if not isinstance(out, torch.Tensor) or out.dim() != 4 or out.shape[0] != x.shape[0]:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"{self.label} returned {got} for a batch of shape {shape}; an op must return "
                             "a (B, C, H, W) tensor of the batch's B images")
        return out.to(x.dtype)

    def shape(self, chw: Shape) -> Shape:
        out = self._run(torch.zeros(2, *chw), (2, *chw))  # under the caller's seeding: builds draw nothing else
        return tuple(int(v) for v in out.shape[1:])  # type: ignore[return-value]

    def v2(self, chw: Shape) -> Callable[..., Any]:
        return self.fn if self.per_image else _OneImage(self.fn)


class _OneImage:
    """The op on one (C, H, W) image of the file-backed loader, as a batch of one."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return self.fn(img[None])[0]


def _is_torchvision_transform(fn: Any) -> bool:
    module = type(fn).__module__ or ""
    return module.startswith("torchvision.transforms")
