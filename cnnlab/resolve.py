"""A raw config checked against the schema and the registries: the one way to get a Config.

This module sits above the registries (formats, models, optimizers, schedules, losses,
augmentations, callbacks), which know nothing of it; config.py, below them all, knows none of
them. Every registry imports torch lazily, so a config is checked, and a typo answered with its
"did you mean", before torch is imported.

The order matters: the fixed sections first (a typo in train: is answered before any user code
runs), then the user's `imports:` (what they register becomes known), then every registered
thing's options, built-in and user-written alike.
"""

from __future__ import annotations

import copy
import typing
from pathlib import Path
from typing import Any

import pydantic
from pydantic_core import PydanticCustomError, core_schema

from cnnlab.config import (
    OPEN_SECTIONS,
    SECTIONS,
    SELECTORS,
    Config,
    DataConfig,
    fields_at,
    read_yaml,
)
from cnnlab.config import apply_overrides as _apply_overrides
from cnnlab.errors import ConfigError
from cnnlab.registry import Registry, format_validation_error
from cnnlab.usercode import load_imports
from cnnlab.usercode.imports import clear_copies
from cnnlab.usercode.paths import absolutize
from cnnlab.usercode.static import check_option_names

_PYDANTIC_TYPES = set(typing.get_args(core_schema.ErrorType))  # the error kinds pydantic itself raises


def registries() -> dict[str, Registry]:
    """The registry of each open section, filled. Imported on first use: a typo in a fixed key
    (train.epocs) is answered before any of them (or the user's code) is imported."""
    from cnnlab.data.read.catalog import FORMATS
    from cnnlab.models import MODELS
    from cnnlab.training.losses import LOSSES
    from cnnlab.training.optim import OPTIMIZERS
    from cnnlab.training.schedule import SCHEDULES

    return {"model": MODELS, "optim": OPTIMIZERS, "schedule": SCHEDULES, "loss": LOSSES, "data": FORMATS}


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config, apply KEY=VALUE overrides, validate everything, resolve defaults."""
    path = Path(path)
    raw = read_yaml(path)
    clear_copies()  # a new config uses the user's files as they are now, not a run's stored copies
    absolutize(raw, path.resolve().parent)  # user files named in the file: relative to the file
    apply_overrides(raw, overrides)
    absolutize(raw, Path.cwd())  # ... and on the command line: relative to where it is typed
    raw.setdefault("name", path.stem)
    try:
        return resolve(raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def apply_overrides(raw: dict[str, Any], items: list[str] | tuple[str, ...]) -> None:
    """config.apply_overrides, knowing which options each registered function takes."""
    _apply_overrides(raw, items, accepted_options)


def accepted_options(section: str, name: Any) -> set[str] | None:
    """The keys a section takes when it names `name`: its fixed keys and the function's options."""
    registry = registries()[section]
    if name is None or str(name) not in registry:
        return None
    return set(OPEN_SECTIONS[section].model_fields) | set(registry.get(str(name)).options())


def resolve(raw: dict[str, Any]) -> Config:
    """Validate a raw config dict (fixed sections, then each registered thing's options)."""
    raw = copy.deepcopy(raw)
    if raw.get("augment") is None:
        raw["augment"] = []
    try:
        cfg = Config.model_validate(raw)
    except pydantic.ValidationError as e:
        first = e.errors()[0]
        loc = first["loc"]
        section, known, rest = ("", SECTIONS, loc) if len(loc) <= 1 else (str(loc[0]), fields_at(loc[:-1]), loc[1:])
        home = [s for s in SECTIONS if len(loc) == 1 and str(loc[0]) in fields_at((s,))]
        if first["type"] == "extra_forbidden" and home:  # `epochs: 3` at the top: a section's key
            raise ConfigError(f"{loc[0]}: unknown top-level key; it belongs under {home[0]}: "
                              f"(did you mean '{home[0]}.{loc[0]}'?)") from None
        detail = {**first, "loc": tuple(rest)}
        if first["type"] not in _PYDANTIC_TYPES:  # a validator's own error (PydanticCustomError): keep its words
            detail["type"] = PydanticCustomError(first["type"], first["msg"])
        sub = pydantic.ValidationError.from_exception_data(e.title, [detail])  # type: ignore[list-item]
        raise ConfigError(format_validation_error(sub, section, known)) from None
    check_option_names(raw)  # a misspelt option of a user's class, read from its file's syntax: no import yet
    load_imports(cfg.imports)
    return _validate_registered(cfg)


def _validate_registered(cfg: Config) -> Config:
    """Check each open section's extra keys against the function its selector names."""
    from cnnlab.data.augment.pipeline import mixes_labels, normalize_augment, resolve_ops
    from cnnlab.training import losses

    regs = registries()
    for section in ("data", "model", "optim", "schedule", "loss"):
        selector, model_cls = SELECTORS[section], OPEN_SECTIONS[section]
        settings = getattr(cfg, section).model_dump()
        fixed = {k: settings[k] for k in model_cls.model_fields}
        extra = {k: v for k, v in settings.items() if k not in model_cls.model_fields}
        known = sorted(k for k in model_cls.model_fields if k != selector)
        resolved = regs[section].validate(settings[selector], extra, section, also_known=known)
        setattr(cfg, section, model_cls.model_validate({**fixed, **resolved}))
    if not cfg.data.path and "path" in regs["data"].get(cfg.data.format).context:
        raise ConfigError("data.path: required key is missing")

    cfg.augment = resolve_ops(normalize_augment(cfg.augment))  # nested op lists too, with the same "did you mean" errors
    cfg.callbacks = resolve_callbacks(cfg.callbacks)
    from cnnlab.models.pretrained import fill_inputs

    fill_inputs(cfg)  # pretrained weights: their input size and statistics, unless the config sets them
    for name, key in (("early_stop", "train.early_stop"), ("tensorboard", "train.tensorboard")):
        if name in [c["name"] for c in cfg.callbacks] and getattr(cfg.train, key.split(".")[1]):
            raise ConfigError(f"callbacks: {name} is also set by {key}; keep one of them")
    mixing = mixes_labels(cfg.augment)
    if mixing and not losses.takes_soft_targets(cfg.loss.name):
        raise ConfigError(
            f"loss.name: '{cfg.loss.name}' cannot learn from the class probabilities that augment's {mixing} "
            f"produces; use a loss that can ({', '.join(sorted(losses.SOFT_TARGET_LOSSES))}) or remove {mixing}"
        )
    return cfg


def resolve_callbacks(items: Any) -> list[dict[str, Any]]:
    """`callbacks:` items (a name, a one-key mapping of options, or {name: ...}) checked against
    the callback registry, defaults filled in."""
    from cnnlab.data.augment.pipeline import normalize_augment
    from cnnlab.training.callbacks import CALLBACKS

    out = []
    for i, item in enumerate(normalize_augment(items, "callbacks", CALLBACKS)):
        where = f"callbacks[{i}]"
        opts = {k: v for k, v in item.items() if k != "name"}
        out.append({"name": item["name"], **CALLBACKS.validate(item["name"], opts, where, where)})
    names = [c["name"] for c in out]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise ConfigError(f"callbacks: '{twice}' is listed twice; list each callback once")
    return out


__all__ = ["Config", "DataConfig", "accepted_options", "apply_overrides", "load_config", "resolve"]
