"""Wrappers over nested op lists: random_apply (per sample) and random_order (per batch).

Nested lists use the same spellings as the top-level `augment:` list. Ops inside a
wrapper must keep the image shape (a batch cannot mix sizes) and must not mix labels.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from cnnlab.data.augment.base import AUGMENTATIONS, Augmentation, Probability, Rng, Shape, chosen
from cnnlab.data.augment.pipeline import resolve_ops
from cnnlab.data.augment.user import build_op
from cnnlab.lazy import lazy

torch = lazy("torch")
T = lazy("torchvision.transforms.v2")

OpList = Annotated[list[str | dict[str, Any]], Field(min_length=1)]


def build_children(ops: list[Any]) -> list[Augmentation]:
    """Ops for a nested list (resolved again here, which changes nothing in a resolved config)."""
    return [build_op(item) for item in resolve_ops(ops, "ops", nested=True)]


class Wrapper(Augmentation):
    """Shared shape rule: every child must keep the shape of its input."""

    def __init__(self, children: list[Augmentation]):
        self.children = children

    def shape(self, chw: Shape) -> Shape:
        for i, child in enumerate(self.children):
            out = child.shape(chw)
            if out != chw:
                raise ValueError(
                    f"ops[{i}] turns {_fmt(chw)} images into {_fmt(out)}; ops applied at random must keep the shape "
                    "(put resizing ops at the top level of augment:)"
                )
        return chw

    def _chain(self, x: torch.Tensor, rng: Rng, order: list[int]) -> torch.Tensor:
        for i in order:
            x = self.children[i].image(x, rng)
        return x


class RandomApply(Wrapper):
    def __init__(self, children: list[Augmentation], p: float):
        super().__init__(children)
        self.p = p

    def image(self, x: torch.Tensor, rng: Rng) -> torch.Tensor:
        keep = chosen(self.p, x, rng.device)
        # The children run on the whole batch; the unchosen samples keep their input.
        return torch.where(keep, self._chain(x, rng, list(range(len(self.children)))), x)

    def v2(self, chw: Shape) -> T.Transform:
        return T.RandomApply([c.v2(chw) for c in self.children], p=self.p)


class RandomOrder(Wrapper):
    def image(self, x: torch.Tensor, rng: Rng) -> torch.Tensor:
        return self._chain(x, rng, [int(i) for i in rng.host.permutation(len(self.children))])

    def v2(self, chw: Shape) -> T.Transform:
        return T.RandomOrder([c.v2(chw) for c in self.children])


@AUGMENTATIONS.register("random_apply")
def random_apply(ops: OpList, p: Probability = 0.5) -> RandomApply:
    """Apply the listed ops, in order, to each sample with probability p (decided per sample)."""
    return RandomApply(build_children(ops), p)  # type: ignore[arg-type]


@AUGMENTATIONS.register("random_order")
def random_order(ops: OpList) -> RandomOrder:
    """Apply all the listed ops in a random order: one order per batch in memory, per image from files."""
    return RandomOrder(build_children(ops))  # type: ignore[arg-type]


def _fmt(chw: Shape) -> str:
    return "x".join(map(str, chw))
