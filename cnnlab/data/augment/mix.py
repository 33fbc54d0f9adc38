"""Label-mixing ops: mixup and cutmix, on whole batches, with torchvision v2's semantics.

Each batch is paired with itself rolled by one (sample i with sample i-1, in an already
shuffled batch), one lambda ~ Beta(alpha, alpha) per batch, and the labels become (B, K)
class probabilities: lambda for a sample's own class, 1 - lambda for its partner's (for
cutmix, lambda is corrected to the area actually kept). Listing both mixup and cutmix
applies one of them per batch, chosen with equal probability, as torchvision's reference
recipe does. These ops only run in training and always come last in the pipeline.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field

from cnnlab.data.augment.base import AUGMENTATIONS, Augmentation, Batch, Rng, Shape
from cnnlab.lazy import lazy

torch = lazy("torch")
F = lazy("torch.nn.functional")
T = lazy("torchvision.transforms.v2")

LABEL_MIXING: set[str] = set()  # names of the ops that turn labels into class probabilities
Alpha = Annotated[float, Field(gt=0.0)]


def soft_labels(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, K) float class probabilities from class indices (or probabilities already)."""
    return y.float() if y.ndim == 2 else F.one_hot(y, num_classes).float()


def hard_labels(y: torch.Tensor) -> torch.Tensor:
    """Class indices: the most probable class of a mixed target (what train_acc counts against)."""
    return y.argmax(1) if y.ndim == 2 else y


class Mix(Augmentation):
    """Mixup or cutmix of a batch with itself rolled by one."""

    mixes_labels = True

    def __init__(self, kind: str, alpha: float, num_classes: int):
        self.kind, self.alpha, self.num_classes = kind, alpha, num_classes

    def __call__(self, batch: Batch, rng: Rng) -> Batch:
        if batch.y is None:
            return batch
        x, y = batch.x, soft_labels(batch.y, self.num_classes)
        lam = float(rng.host.beta(self.alpha, self.alpha))
        if self.kind == "mixup":
            x = x.roll(1, 0).mul_(1.0 - lam).add_(x.mul(lam))  # the order torchvision computes in
        else:
            h, w = x.shape[2:]
            x1, y1, x2, y2 = cutmix_box(lam, h, w, int(rng.host.integers(w)), int(rng.host.integers(h)))
            x = x.clone()
            x[..., y1:y2, x1:x2] = batch.x.roll(1, 0)[..., y1:y2, x1:x2]
            lam = 1.0 - (x2 - x1) * (y2 - y1) / (w * h)
        return Batch(x, y.roll(1, 0).mul_(1.0 - lam).add_(y.mul(lam)))

    def v2(self, chw: Shape) -> T.Transform:
        cls = T.MixUp if self.kind == "mixup" else T.CutMix
        return cls(alpha=self.alpha, num_classes=self.num_classes)


def cutmix_box(lam: float, h: int, w: int, cx: int, cy: int) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2): a box of about (1 - lam) of the area centred at (cx, cy), clipped (torchvision's rule)."""
    r = 0.5 * math.sqrt(1.0 - lam)
    rw, rh = int(r * w), int(r * h)
    return max(cx - rw, 0), max(cy - rh, 0), min(cx + rw, w), min(cy + rh, h)


class OneOf(Augmentation):
    """One of several label-mixing ops per batch, chosen uniformly."""

    mixes_labels = True

    def __init__(self, ops: list[Augmentation]):
        self.ops = ops

    def __call__(self, batch: Batch, rng: Rng) -> Batch:
        return self.ops[int(rng.host.integers(len(self.ops)))](batch, rng)

    def v2(self, chw: Shape) -> T.Transform:
        return T.RandomChoice([op.v2(chw) for op in self.ops])


def _mixing(name: str):
    LABEL_MIXING.add(name)
    return AUGMENTATIONS.register(name, context=("num_classes",))


@_mixing("mixup")
def mixup(num_classes: int, alpha: Alpha = 1.0) -> Mix:
    """Blend each image with another: x = lam x_i + (1 - lam) x_j, labels likewise; lam ~ Beta(alpha, alpha)."""
    return Mix("mixup", alpha, num_classes)


@_mixing("cutmix")
def cutmix(num_classes: int, alpha: Alpha = 1.0) -> Mix:
    """Paste a box of another image; labels weighted by the area each image keeps."""
    return Mix("cutmix", alpha, num_classes)
