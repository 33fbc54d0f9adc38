"""The one place an engine is chosen: `engine:` in the config -> the class that trains it."""

from __future__ import annotations

from cnnlab.config import Config
from cnnlab.training.engine import EngineType
from cnnlab.training.numpy_engine import NumpyEngine
from cnnlab.training.torch_engine import TorchEngine

ENGINES: dict[str, EngineType] = {"torch": TorchEngine, "scratch": NumpyEngine}  # type: ignore[dict-item]


def engine_type(cfg: Config) -> EngineType:
    """The engine class of a run (`engine` is validated by the config schema)."""
    return ENGINES[cfg.engine]
