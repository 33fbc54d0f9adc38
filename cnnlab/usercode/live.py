"""Objects handed to the Python API directly: an `nn.Module` instance, a `Dataset`, a loss.

A class or function that can be imported again is written into the config as its reference
(`nets.py:TinyVGG`, `mypkg.nets:TinyVGG`, or `__main__:TinyVGG` for a notebook's own class:
that one resolves only in the process that defined it). An object (an instance, a dataset) has
no name to import it by: it is kept here under `object:<Kind>#<n>` for this process, and the
run records that it was passed from Python, so a later command that must rebuild it says so in
one line, and the Python API accepts the object again.
"""

from __future__ import annotations

import inspect
import itertools
from typing import Any

from cnnlab.errors import ConfigError

OBJECT = "object:"
_OBJECTS: dict[str, Any] = {}
_COUNTER = itertools.count(1)


def keep(obj: Any) -> str:
    """The `object:` reference of a live object (the same one each time it is passed)."""
    for ref, held in _OBJECTS.items():
        if held is obj:
            return ref
    ref = f"{OBJECT}{type(obj).__name__}#{next(_COUNTER)}"
    _OBJECTS[ref] = obj
    return ref


def bind(ref: str, obj: Any) -> None:
    """Let `ref` (as a run's config.yaml names it) stand for `obj` in this process: reopening a
    run whose model or data was passed from Python, with the object passed again."""
    _OBJECTS[ref] = obj


def bound(ref: str) -> bool:
    """Whether this process has an object standing for `ref` (passed directly, or bound again)."""
    return ref in _OBJECTS


def lookup(ref: str, where: str) -> Any:
    """The builder a live reference stands for: returns the object itself (no options)."""
    if ref not in _OBJECTS:
        raise ConfigError(
            f"{where}: '{ref}' was an object passed to cnnlab from Python in another process; this process cannot "
            "rebuild it: open the run from Python and pass it again (e.g. cnnlab.Run(path).model(model=net), "
            ".evaluate(data=dataset)), or give a class in a file (imports:) so every command can build it")
    obj = _OBJECTS[ref]
    return obj if isinstance(obj, type) or inspect.isfunction(obj) else _Returns(obj)


class _Returns:
    """A builder that takes no options and returns the live object (trained in place)."""

    def __init__(self, obj: Any):
        self.obj = obj

    def __call__(self) -> Any:
        return self.obj


def is_live(ref: Any) -> bool:
    return isinstance(ref, str) and ref.startswith(OBJECT)


def returned_object(fn: Any) -> Any | None:
    """The object behind a live builder, or None for any other builder."""
    return fn.obj if isinstance(fn, _Returns) else None
