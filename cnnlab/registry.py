"""Registries: name -> builder function, with config validation derived from the signature.

A builder is a plain function. Its keyword parameters are the config keys users may set
(type hints become validation, defaults become the resolved config); parameters listed in
`context` are supplied by cnnlab at build time (the number of classes, the parameters to
optimise, ...). Registering one function makes it reachable from YAML, CLI overrides and
studies. Every registry is called the same way: `REGISTRY.build(section, **context)`, where
`section` is the config section (or op mapping) that names the entry and holds its options.

Only the options' annotations are evaluated, never the context's or the return type's, so a
builder module that imports torch lazily (cnnlab/lazy.py) is validated without torch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pydantic

from cnnlab.errors import ConfigError, suggest


@dataclass
class Entry:
    """One registered builder and the pydantic model that validates its options."""

    name: str
    fn: Callable[..., Any]
    context: tuple[str, ...]
    _schema: type[pydantic.BaseModel] | None = field(default=None, repr=False)

    def schema(self) -> type[pydantic.BaseModel]:
        if self._schema is None:
            fields: dict[str, Any] = {}
            for p in inspect.signature(self.fn).parameters.values():
                if p.name in self.context or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                    continue
                default = ... if p.default is inspect.Parameter.empty else p.default
                fields[p.name] = (self._annotation(p.name), default)
            self._schema = pydantic.create_model(  # type: ignore[call-overload]
                f"{self.name}_options",
                __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True),
                **fields,
            )
        return self._schema

    def _annotation(self, name: str) -> Any:
        """One option's type (a string under `from __future__ import annotations`, evaluated here)."""
        ann = self.fn.__annotations__.get(name, Any)
        return eval(ann, self.fn.__globals__) if isinstance(ann, str) else ann  # noqa: S307 (our own source)

    def options(self) -> list[str]:
        return list(self.schema().model_fields)


class Registry:
    """Named builders of one kind (models, optimizers, data formats, ...)."""

    def __init__(self, kind: str, section: str, key: str = "name"):
        self.kind = kind  # e.g. "data format"
        self.key = key  # the key of a section that names its entry: "name", or "format" in data:
        self.selector = f"{section}.{key}"  # for messages, e.g. "data.format"
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, *, context: tuple[str, ...] = ()) -> Callable:
        """Decorator: register `fn` under `name`."""

        def deco(fn: Callable) -> Callable:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self._entries[name] = Entry(name, fn, tuple(context))
            return fn

        return deco

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return self._resolve_name(name) is not None

    def _resolve_name(self, name: str) -> str | None:
        if name in self._entries:
            return name
        # "prefix:rest" entries (torchvision:resnet18) are registered as "prefix:".
        if ":" in name and name.split(":", 1)[0] + ":" in self._entries:
            return name.split(":", 1)[0] + ":"
        return None

    def get(self, name: str, where: str | None = None) -> Entry:
        """The entry for `name`, or a ConfigError naming the valid choices."""
        key = self._resolve_name(str(name))
        if key is None:
            shown = [n + "<name>" if n.endswith(":") else n for n in self.names()]
            hint = suggest(str(name), self.names())
            raise ConfigError(
                f"{where or self.selector}: unknown {self.kind} '{name}'{hint}; "
                f"choose one of: {', '.join(shown)}"
            )
        return self._entries[key]

    def validate(self, name: str, options: dict[str, Any], section: str, where: str | None = None,
                 also_known: list[str] = ()) -> dict[str, Any]:
        """Check `options` against the builder's signature; return them with defaults filled in.
        `also_known`: the section's common keys (optim.lr), offered too when a key is misspelt."""
        entry = self.get(name, where)
        try:
            model = entry.schema().model_validate(options)
        except pydantic.ValidationError as e:
            known = [*entry.options(), *also_known]
            raise ConfigError(format_validation_error(e, section, known, name)) from None
        return model.model_dump()

    def build(self, section: Any, **context: Any) -> Any:
        """Call the entry `section` names with the options it holds, plus build-time context.

        `section`: a validated config section (pydantic model) or a mapping, e.g. cfg.model or
        one op of augment:; keys that are not the entry's options (optim.lr, the selector)
        are left out, and what the builder needs of them comes in `context`.
        """
        settings = section.model_dump() if hasattr(section, "model_dump") else dict(section)
        name = str(settings[self.key])
        entry = self.get(name)
        options = {k: settings[k] for k in entry.options() if k in settings}
        if entry.name.endswith(":"):  # "torchvision:resnet18" passes arch="resnet18"
            context = {**context, "arch": name.split(":", 1)[1]}
        wanted = {k: v for k, v in context.items() if k in entry.context}
        return entry.fn(**options, **wanted)


def format_validation_error(
    err: pydantic.ValidationError, section: str, known: list[str], owner: str | None = None
) -> str:
    """One line for the first problem in a pydantic error, with the full dotted key."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    key = f"{section}.{loc}" if section and loc else (section or loc)
    if first["type"] == "extra_forbidden":
        leaf = str(first["loc"][-1])
        hint = suggest(leaf, known)
        if hint:
            word = hint.split(chr(39))[1]
            # Replace only the leaf, so nested keys (train.early_stop.monitr) keep their path.
            dotted = f"{key.rsplit('.', 1)[0]}.{word}" if "." in key else word
            hint = f" (did you mean '{dotted}'?)"
        where = f" for {owner}" if owner else ""
        return f"{key}: unknown key{where}{hint}"
    if first["type"] == "missing":
        return f"{key}: required key is missing"
    got = first.get("input")
    shown = f" (got {got!r})" if not isinstance(got, dict) else ""
    return f"{key}: {first['msg']}{shown}"
