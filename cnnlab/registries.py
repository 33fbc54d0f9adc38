"""Every registry in one place: what a user can add, and the decorators that add to them.

| kind        | `cnnlab list` | registry (module)                     | in a config                 |
|-------------|---------------|---------------------------------------|-----------------------------|
| model       | models        | MODELS (cnnlab/models/registry.py)     | model.name                  |
| data format | formats       | FORMATS (cnnlab/data/read/registry.py) | data.format              |
| loss        | losses        | LOSSES (cnnlab/training/losses.py)     | loss.name                   |
| optimizer   | optimizers    | OPTIMIZERS (cnnlab/training/optim.py)  | optim.name                  |
| schedule    | schedules     | SCHEDULES (cnnlab/training/schedule.py) | schedule.name              |
| augmentation| augment       | AUGMENTATIONS (cnnlab/data/augment/base.py) | augment: [...]         |
| callback    | callbacks     | CALLBACKS (cnnlab/callbacks.py)        | callbacks: [...]            |
| analysis    | analyses      | ANALYSES (cnnlab/analysis/registry.py) | cnnlab analyze RUN WHAT     |

Each registry is filled by importing the modules of its kind (`cnnlab.models` imports every
family); `registry(kind)` does that, so a user's `@cnnlab.register_model("resnet")` meets the
built-in `resnet` and is refused, instead of being overwritten later.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from cnnlab.registry import Registry

# kind (as `cnnlab list` names it) -> (module that fills the registry, its name there)
KINDS: dict[str, tuple[str, str]] = {
    "models": ("cnnlab.models", "MODELS"),
    "formats": ("cnnlab.data.read.catalog", "FORMATS"),
    "losses": ("cnnlab.training.losses", "LOSSES"),
    "optimizers": ("cnnlab.training.optim", "OPTIMIZERS"),
    "schedules": ("cnnlab.training.schedule", "SCHEDULES"),
    "augment": ("cnnlab.data.augment", "AUGMENTATIONS"),
    "callbacks": ("cnnlab.training.callbacks", "CALLBACKS"),
    "analyses": ("cnnlab.analysis.catalog", "ANALYSES"),
}


def registry(kind: str) -> Registry:
    """The filled registry of a kind (see KINDS)."""
    module, name = KINDS[kind]
    return getattr(importlib.import_module(module), name)


def _register(kind: str) -> Callable[..., Callable[[Callable], Callable]]:
    def register(name: str, *, context: tuple[str, ...] | None = None) -> Callable[[Callable], Callable]:
        return registry(kind).register(name, context=context)

    register.__doc__ = (f"Decorator: make a function or class reachable by name wherever a {kind[:-1]} is named "
                        "(its keyword parameters become its options, validated from their type hints).")
    return register


register_model = _register("models")
register_format = _register("formats")
register_loss = _register("losses")
register_optimizer = _register("optimizers")
register_schedule = _register("schedules")
register_augment = _register("augment")
register_callback = _register("callbacks")
register_analysis = _register("analyses")


def describe(kind: str) -> list[dict[str, Any]]:
    """Each entry of a kind: name, where it comes from, its one-line doc, and its options (name,
    type, default or None when required), for `cnnlab list` and the generated docs."""
    import inspect

    out = []
    for entry in registry(kind).entries():
        fields = entry.schema().model_fields
        options = []
        for p in entry.parameters():
            if p.name not in fields:
                continue
            f = fields[p.name]
            options.append({"name": p.name, "type": type_name(f.annotation),
                            "default": None if f.is_required() else f.default, "required": f.is_required()})
        out.append({"name": entry.name, "origin": entry.origin, "doc": entry.doc(), "options": options,
                    "fixed": entry.fixed(), "context": list(entry.context),
                    "any_key": entry.takes_any_key(), "signature": str(inspect.signature(entry.source))
                    if callable(entry.source) else ""})
    return out


def type_name(annotation: Any) -> str:
    """A short, readable type: int, float | None, list[int], 'a' | 'b'."""
    import typing

    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin is typing.Literal:
        return " | ".join(repr(a) if isinstance(a, str) else str(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_name(a) for a in args)}]" if args else name
    if annotation is typing.Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))
