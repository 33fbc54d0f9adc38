"""From the `augment:` list to a Pipeline: validation, shapes, train ops and evaluation ops.

Training applies every op in the listed order. Evaluation and prediction apply only the
deterministic geometry ops (resize, center_crop), in the same order, like a torchvision
eval transform. The model's input shape is the shape after them, and training must end at
the same shape, or the config is rejected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cnnlab.data.augment.base import AUGMENTATIONS, Augmentation, Shape
from cnnlab.data.augment.mix import LABEL_MIXING, OneOf
from cnnlab.data.augment.user import build_op
from cnnlab.errors import ConfigError
from cnnlab.lazy import lazy

T = lazy("torchvision.transforms.v2")


def resolve_ops(items: Any, where: str = "augment", nested: bool = False) -> list[dict[str, Any]]:
    """Normalise and validate an op list (and every nested `ops:` list), filling in defaults."""
    out: list[dict[str, Any]] = []
    for i, item in enumerate(normalize_augment(items, where)):
        here = f"{where}[{i}]"
        name = item["name"]
        opts = {k: v for k, v in item.items() if k != "name"}
        resolved = AUGMENTATIONS.validate(name, opts, here, here)
        if name in LABEL_MIXING and nested:
            raise ConfigError(f"{here}: {name} mixes the labels of whole batches, so it cannot be nested; "
                              "list it at the top level of augment:")
        if name not in LABEL_MIXING and mixes_labels(out):
            raise ConfigError(f"{here}: {name} comes after a label-mixing op; mixup and cutmix act on finished "
                              "batches, so move them to the end of augment:")
        if "ops" in resolved:
            resolved["ops"] = resolve_ops(resolved["ops"], f"{here}.ops", nested=True)
        out.append({"name": name, **resolved})
    return out


def normalize_augment(items: Any, where: str = "augment", registry: Any = None) -> list[dict[str, Any]]:
    """Accept `- hflip`, `- random_crop: {padding: 4}`, `- {name: random_crop, padding: 4}`,
    or a bare value for an op's first option: `- resize: 40`, `- random_apply: [vflip, hflip]`.
    `registry`: whose entries the names are (callbacks: are written the same way)."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise ConfigError(f"{where}: expected a list of augmentations, e.g. [hflip, {{random_crop: {{padding: 4}}}}]")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            out.append({"name": item})
        elif isinstance(item, dict) and "name" in item:
            out.append(dict(item))
        elif isinstance(item, dict) and len(item) == 1:
            (name, opts), = item.items()
            if opts is None:
                opts = {}
            if not isinstance(opts, dict):
                opts = {_first_option(str(name), f"{where}[{i}]", opts, registry or AUGMENTATIONS): opts}
            out.append({"name": name, **opts})
        else:
            raise ConfigError(f"{where}[{i}]: expected a name or a one-key mapping, got {item!r}")
    return out


def _first_option(name: str, where: str, value: Any, registry: Any) -> str:
    """The option a bare value sets: the op's first keyword parameter."""
    options = registry.get(name, where).options()
    if not options:
        raise ConfigError(f"{where}.{name}: takes no options, got {value!r}")
    return options[0]


def mixes_labels(items: list[dict[str, Any]]) -> str | None:
    """The first label-mixing op's name in a resolved list, or None."""
    return next((it["name"] for it in items if it["name"] in LABEL_MIXING), None)


@dataclass
class Pipeline:
    """The built ops of one config for images of one shape."""

    train_ops: list[Augmentation]  # image ops in order, then at most one (label-mixing) batch op
    eval_ops: list[Augmentation]  # the deterministic ops, applied at evaluation and prediction
    image_shape: Shape  # the stored images
    input_shape: Shape  # what the model sees, in training and evaluation alike
    items: list[dict[str, Any]]  # the resolved config it was built from (loader workers rebuild it)
    num_classes: int

    @property
    def image_ops(self) -> list[Augmentation]:
        return [op for op in self.train_ops if not op.mixes_labels]

    @property
    def batch_op(self) -> Augmentation | None:
        return next((op for op in self.train_ops if op.mixes_labels), None)

    def v2_train(self) -> Callable[..., Any]:
        """Per-image torchvision transform for training (everything but label mixing)."""
        return _compose(self.image_ops, self.image_shape)

    def v2_eval(self) -> Callable[..., Any]:
        """Per-image torchvision transform for evaluation and prediction."""
        return _compose(self.eval_ops, self.image_shape)

    def v2_batch(self) -> Callable[..., Any] | None:
        """torchvision's MixUp / CutMix (or a choice of them), applied to whole batches."""
        op = self.batch_op
        return None if op is None else op.v2(self.input_shape)


def _compose(ops: list[Augmentation], chw: Shape) -> Callable[..., Any]:
    transforms = []
    for op in ops:
        transforms.append(op.v2(chw))
        chw = op.shape(chw)
    return T.Compose(transforms) if transforms else T.Identity()


def build_pipeline(items: list[dict[str, Any]], image_shape: Shape, num_classes: int) -> Pipeline:
    """Build the resolved `augment:` list for images of `image_shape`; shape problems are ConfigErrors."""
    ops: list[Augmentation] = []
    mixing: list[Augmentation] = []
    shape = eval_shape = tuple(image_shape)
    for i, item in enumerate(items):
        here = f"augment[{i}].{item['name']}"
        try:
            op = build_op(item, num_classes=num_classes)
            (mixing if op.mixes_labels else ops).append(op)
            shape = op.shape(shape)  # type: ignore[assignment]
            if op.always:
                eval_shape = op.shape(eval_shape)  # type: ignore[assignment]
        except ValueError as e:
            raise ConfigError(f"{here}: {e}") from None
    if shape != eval_shape:
        raise ConfigError(
            f"augment: training images come out {_fmt(shape)} but evaluation images {_fmt(eval_shape)} "
            "(evaluation applies only resize and center_crop); end the list with a center_crop or resize "
            f"to {shape[1]}x{shape[2]}"
        )
    if len(mixing) > 1:
        mixing = [OneOf(mixing)]
    return Pipeline(ops + mixing, [op for op in ops if op.always], tuple(image_shape), shape,  # type: ignore[arg-type]
                    items, num_classes)


def _fmt(chw: tuple[int, ...]) -> str:
    return "x".join(map(str, chw))
