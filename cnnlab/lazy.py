"""Modules imported on first use, for start-up speed.

Every registered builder (formats, models, optimizers, schedules, losses, augmentations) is
imported to validate a config, and importing torch and torchvision takes seconds. A module
that names torch as `torch = lazy("torch")` can be imported, and its builders' signatures
read, without torch: the real import happens the first time an attribute is used (building
a model, running an op). Such a module must not touch torch at import time (no torch
default arguments, decorators or module-level tensors; no class deriving from a torch class:
those go in modules that are only imported when a thing is built).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class LazyModule(types.ModuleType):
    """Stands for module `name`; the first attribute read imports it."""

    def __init__(self, name: str):
        super().__init__(name)
        self.__dict__["_lazy_name"] = name

    def __getattr__(self, attr: str) -> Any:
        value = getattr(importlib.import_module(self.__dict__["_lazy_name"]), attr)
        setattr(self, attr, value)  # later reads are plain attribute hits
        return value


def lazy(name: str) -> Any:
    """Module `name`, imported now if it already is, else on first attribute access."""
    return sys.modules.get(name) or LazyModule(name)
