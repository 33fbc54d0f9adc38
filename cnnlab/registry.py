"""Registries: name -> builder function, with config validation derived from the signature.

A builder is a plain function (or a class). Its keyword parameters are the config keys users
may set (type hints become validation, defaults become the resolved config); parameters named
like the registry's `context` are supplied by cnnlab at build time (the number of classes, the
parameters to optimise, ...). Registering one function makes it reachable from YAML, CLI
overrides and studies. Every registry is called the same way: `REGISTRY.build(section,
**context)`, where `section` is the config section (or op mapping) that names the entry and
holds its options.

The user's own code goes through the same door: a function or class registered from their
file (`@cnnlab.register_model("tiny")`), or named directly where a name is accepted
(`model: {name: nets.py:TinyVGG}`, cnnlab/usercode/), is validated from its signature exactly
like a built-in, and gets the context its signature asks for by name.

Only the options' annotations are evaluated, never the context's or the return type's, so a
builder module that imports torch lazily (cnnlab/lazy.py) is validated without torch.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from cnnlab.errors import ConfigError, suggest
from cnnlab.usercode.imports import is_reference, on_forget, resolve_reference, short
from cnnlab.usercode.live import returned_object

ALL: list[Registry] = []  # every registry, so an edited user file's names can be forgotten in all of them
_PACKAGE = str(Path(__file__).resolve().parent)
_PLAIN = (type(None), bool, int, float, str, list, tuple, dict)


@dataclass
class Entry:
    """One registered builder and the pydantic model that validates its options."""

    name: str
    fn: Callable[..., Any]  # what build() calls with the options and the context
    context: tuple[str, ...]
    target: Any = None  # whose signature and annotations define the options (default: fn)
    skip: tuple[str, ...] = ()  # leading data parameters of a user loss or op function: not options
    origin: str | None = None  # the user file that defined it (None: cnnlab's own)
    attrs: dict[str, Any] = field(default_factory=dict)  # what the registration adds (a format's lister)
    _schema: type[pydantic.BaseModel] | None = field(default=None, repr=False)
    _fixed: list[str] = field(default_factory=list, repr=False)

    @property
    def source(self) -> Any:
        return self.target if self.target is not None else self.fn

    def parameters(self) -> list[inspect.Parameter]:
        """The options' parameters: the signature less context, data parameters and *args/**kwargs."""
        try:
            params = inspect.signature(self.source).parameters.values()
        except (TypeError, ValueError):  # a builtin without a signature
            return []
        return [p for p in params if p.name not in self.context and p.name not in self.skip
                and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]

    def takes_any_key(self) -> bool:
        try:
            return any(p.kind == p.VAR_KEYWORD for p in inspect.signature(self.source).parameters.values())
        except (TypeError, ValueError):
            return False

    def schema(self) -> type[pydantic.BaseModel]:
        if self._schema is None:
            fields: dict[str, Any] = {}
            for p in self.parameters():
                if p.default is not inspect.Parameter.empty and not _plain(p.default):
                    self._fixed.append(p.name)  # a Python object as default: not settable from YAML
                    continue
                default = ... if p.default is inspect.Parameter.empty else p.default
                fields[p.name] = (self._annotation(p.name), default)
            extra = "allow" if self.takes_any_key() else "forbid"
            try:
                self._schema = pydantic.create_model(  # type: ignore[call-overload]
                    f"{_identifier(self.name)}_options",
                    __config__=pydantic.ConfigDict(extra=extra, arbitrary_types_allowed=True), **fields)
            except (pydantic.PydanticSchemaGenerationError, TypeError, NameError):
                # A type pydantic cannot check: the options are taken as they are.
                loose = {k: (Any, d) for k, (_, d) in fields.items()}
                self._schema = pydantic.create_model(  # type: ignore[call-overload]
                    f"{_identifier(self.name)}_options", __config__=pydantic.ConfigDict(extra=extra), **loose)
        return self._schema

    def _annotation(self, name: str) -> Any:
        """One option's type (a string under `from __future__ import annotations`, evaluated here)."""
        fn = self.source.__init__ if isinstance(self.source, type) else self.source
        fn = getattr(fn, "__wrapped__", fn)
        ann = getattr(fn, "__annotations__", {}).get(name, Any)
        if not isinstance(ann, str):
            return ann
        try:
            return eval(ann, getattr(fn, "__globals__", {}))  # noqa: S307 (the annotation's own module)
        except Exception:  # a name imported under TYPE_CHECKING only, say: unchecked
            return Any

    def options(self) -> list[str]:
        return list(self.schema().model_fields)

    def fixed(self) -> list[str]:
        """Parameters whose default is a Python object: left to the function, not settable in a config."""
        self.schema()
        return list(self._fixed)

    def doc(self) -> str:
        """The first paragraph of the builder's docstring, on one line."""
        own = self.source.__dict__.get("__doc__") if isinstance(self.source, type) else None  # not a base class's
        text = inspect.cleandoc(own or "") if isinstance(self.source, type) else (inspect.getdoc(self.source) or "")
        text = text.strip()
        return " ".join(line.strip() for line in text.split("\n\n")[0].splitlines())


class Registry:
    """Named builders of one kind (models, optimizers, data formats, ...)."""

    def __init__(self, kind: str, section: str, key: str = "name", context: tuple[str, ...] = (),
                 data_params: int = 0):
        self.kind = kind  # e.g. "data format"
        self.key = key  # the key of a section that names its entry: "name", or "format" in data:
        self.selector = f"{section}.{key}"  # for messages, e.g. "data.format"
        self.context = tuple(context)  # what cnnlab can supply to a builder, by parameter name
        # A user function with at least this many required positional parameters is the thing itself
        # (a loss(logits, targets, ...), an op(images, ...)): its other parameters are its options.
        self.data_params = data_params
        self._entries: dict[str, Entry] = {}
        self._references: dict[str, tuple[Any, Entry]] = {}  # reference -> (object it named, entry)
        ALL.append(self)

    def register(self, name: str, *, context: tuple[str, ...] | None = None, **attrs: Any) -> Callable:
        """Decorator: register `fn` under `name`. `context`: the parameters cnnlab supplies (default:
        those of the registry's context names that the signature has); `attrs`: more that belongs to
        the entry (a data format's `lister`), so a thing registers once."""

        def deco(fn: Callable) -> Callable:
            origin = origin_of(fn)
            held = self._entries.get(name)
            if held is not None and held.origin != origin:
                a, b = _shown(held.origin), _shown(origin)
                if a == b:  # two files of one name: their folders tell them apart
                    a, b = str(held.origin), str(origin)
                raise ConfigError(f"{self.kind} '{name}' is registered twice: by {a} and by {b}; rename one")
            entry = self._entry(name, fn, origin, context)
            entry.attrs.update(attrs)
            self._entries[name] = entry
            return fn

        return deco

    def _entry(self, name: str, obj: Any, origin: str | None, context: tuple[str, ...] | None = None) -> Entry:
        if context is not None:
            return Entry(name, obj, tuple(context), origin=origin)
        try:
            names = [p.name for p in inspect.signature(obj).parameters.values()]
        except (TypeError, ValueError):
            names = []
        ctx = tuple(n for n in names if n in self.context)
        skip = _data_parameters(obj, self.data_params, ctx) if origin is not None else ()
        if skip:  # a loss or op written as the function itself: bind its options, call it later
            return Entry(name, functools.partial(_bind, obj), ctx, target=obj, skip=skip, origin=origin)
        return Entry(name, obj, ctx, origin=origin)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self, referenced: bool = True) -> list[Entry]:
        """Registered entries by name, then (with `referenced`) the FILE.py:NAME references this process
        has resolved (a config's own code)."""
        out = [self._entries[n] for n in self.names()]
        return out + [e for _, e in self._references.values()] if referenced else out

    def __contains__(self, name: str) -> bool:
        return self._resolve_name(name) is not None or is_reference(name)

    def _resolve_name(self, name: str) -> str | None:
        if name in self._entries:
            return name
        # "prefix:rest" entries (torchvision:resnet18) are registered as "prefix:".
        if ":" in name and name.split(":", 1)[0] + ":" in self._entries:
            return name.split(":", 1)[0] + ":"
        return None

    def get(self, name: str, where: str | None = None) -> Entry:
        """The entry for `name` (importing the user code a reference names), or a ConfigError
        naming the valid choices."""
        key = self._resolve_name(str(name))
        if key is None and is_reference(name):
            obj = resolve_reference(str(name), where or self.selector)
            held = self._references.get(str(name))
            if held is None or held[0] is not obj:
                origin = "<python>" if returned_object(obj) is not None else origin_of(obj)
                held = (obj, self._entry(str(name), obj, origin))
                self._references[str(name)] = held
            return held[1]
        if key is None:
            shown = [n + "<name>" if n.endswith(":") else n for n in self.names()]
            hint = suggest(str(name), self.names())
            raise ConfigError(
                f"{where or self.selector}: unknown {self.kind} '{name}'{hint}; "
                f"choose one of: {', '.join(shown)}, or name your own as FILE.py:NAME (or MODULE:NAME)"
            )
        return self._entries[key]

    def forget(self, origin: str) -> None:
        """Drop what one user file registered or was referenced for (it is being imported again)."""
        for name in [n for n, e in self._entries.items() if e.origin == origin]:
            del self._entries[name]
        for ref in [r for r, (_, e) in self._references.items() if e.origin == origin]:
            del self._references[ref]

    def validate(self, name: str, options: dict[str, Any], section: str, where: str | None = None,
                 also_known: list[str] = ()) -> dict[str, Any]:
        """Check `options` against the builder's signature; return them with defaults filled in.
        `also_known`: the section's common keys (optim.lr), offered too when a key is misspelt."""
        entry = self.get(name, where)
        for key in options:
            if key in entry.context:
                raise ConfigError(f"{section}.{key}: cnnlab supplies {key} to {_label(entry)} (from the data and the "
                                  "run); remove it from the config")
        if entry.origin is not None:
            schema = entry.schema()
            missing = [k for k, f in schema.model_fields.items() if f.is_required() and k not in options]
            if missing:
                supplied = f" (it supplies {', '.join(self.context)})" if self.context else ""
                raise ConfigError(
                    f"{section}.{missing[0]}: {_label(entry)} needs '{missing[0]}' (no default in its signature), the "
                    f"config does not set it and cnnlab cannot supply it{supplied}; set {section}.{missing[0]}")
        try:
            model = entry.schema().model_validate(options)
        except pydantic.ValidationError as e:
            known = [*entry.options(), *also_known]
            raise ConfigError(format_validation_error(e, section, known, _label(entry))) from None
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
        keys = entry.options() if not entry.takes_any_key() else [k for k in settings if k != self.key]
        options = {k: settings[k] for k in keys if k in settings}
        if entry.name.endswith(":"):  # "torchvision:resnet18" passes arch="resnet18"
            context = {**context, "arch": name.split(":", 1)[1]}
        wanted = {k: v for k, v in context.items() if k in entry.context}
        if entry.origin is None:
            return entry.fn(**options, **wanted)
        from cnnlab.usercode.blame import blame

        try:
            return entry.fn(**options, **wanted)
        except Exception as e:
            err = blame(e, f"{self.selector}: {_label(entry)} raised while being built")
            if err is None:
                raise
            raise err from None


def _bind(fn: Callable[..., Any], **options: Any) -> Callable[..., Any]:
    """A user's loss or op function with its options given: called later on the data alone."""
    bound = functools.partial(fn, **options)
    functools.update_wrapper(bound, fn)  # type: ignore[arg-type]
    return bound


def _data_parameters(obj: Any, count: int, context: tuple[str, ...]) -> tuple[str, ...]:
    """The leading data parameters of a function that is itself a loss or an op (see data_params)."""
    if count == 0 or isinstance(obj, type) or not inspect.isfunction(getattr(obj, "__wrapped__", obj)):
        return ()
    params = [p for p in inspect.signature(obj).parameters.values() if p.name not in context]
    lead = params[:count]
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if len(lead) == count and all(p.kind in positional and p.default is inspect.Parameter.empty for p in lead):
        return tuple(p.name for p in lead)
    return ()


def origin_of(obj: Any) -> str | None:
    """The user file that defined obj, or None when it is cnnlab's (or a library's registered by cnnlab)."""
    target = getattr(obj, "__wrapped__", obj)
    file = None
    code = getattr(target, "__code__", None)
    if code is not None:
        file = code.co_filename
    else:
        module = sys.modules.get(getattr(target, "__module__", "") or "")
        file = getattr(module, "__file__", None)
    if not file:
        return "<python>"  # defined in a notebook cell or interactively
    resolved = str(Path(file).resolve()) if not file.startswith("<") else file
    return None if resolved.startswith(_PACKAGE) else resolved


def forget_file(path: str) -> None:
    """Forget, in every registry, what `path` registered (it is about to be imported again, or failed)."""
    resolved = str(Path(path).resolve())
    for registry in ALL:
        registry.forget(resolved)


on_forget(forget_file)

def _shown(origin: str | None) -> str:
    return "cnnlab" if origin is None else Path(origin).name if not origin.startswith("<") else "Python code"


def _label(entry: Entry) -> str:
    return short(entry.name) if entry.origin is not None else entry.name


def _plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return isinstance(value, _PLAIN)


def _identifier(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)[-60:] or "entry"


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
