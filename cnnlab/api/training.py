"""`cnnlab.build`, `cnnlab.train`, `cnnlab.resume`: the Python entry to training, and the one the
command line uses (`cnnlab train` is load_config + train).

A config is a YAML path, a dict, or a Config; keyword sections merge into it
(`train={"epochs": 3}`), dotted keys set one value (`**{"optim.lr": 0.01}`, as on the command line).
Python objects may stand in for any named thing (usercode/live.py says how they are recorded):
    model=TinyVGG (a class: built with num_classes etc. and the model: options) or model=net (an
    instance: trained in place), data=dataset (a Dataset of (image, label) pairs, (images, labels)
    arrays, or a dict of them by split), loss=FocalLoss or focal_loss, augment=[..., my_op],
    callbacks=[CSVLogger("log.csv")].
Building checks everything and writes nothing; fit() makes the run directory and trains.
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Any

from cnnlab.config import DataConfig, read_yaml
from cnnlab.errors import ConfigError
from cnnlab.usercode import imports, live
from cnnlab.usercode.paths import absolutize

ConfigLike = Any  # str | Path | dict | Config | None


class Experiment:
    """A run ready to train: its config resolved, data read, model and optimizer built, nothing written.

    `.config` (the resolved Config), `.model` (the nn.Module as built), `.data` (train/val/test splits,
    classes, normalisation), then `.fit()` trains it into a new run directory and returns its Run."""

    def __init__(self, session: Any, objects: dict[str, str]):
        self.session = session
        self.config = session.cfg
        self.model = session.model
        self.data = session.bundle
        self._objects = objects
        self._fitted = False

    def __repr__(self) -> str:
        return (f"Experiment({self.config.name!r}: {imports.short(self.config.model.name)} on "
                f"{imports.short(self.config.data.format)}, {self.config.train.epochs} epochs)")

    def fit(self, *, quiet: bool = False, progress: bool | None = None, run_dir: str | Path | None = None) -> Any:
        """Train into a new run directory (or `run_dir`); returns the cnnlab.Run. `progress=False`:
        one line per epoch, no bars; `quiet`: nothing printed."""
        from cnnlab.api.run import Run
        from cnnlab.training.runner import fit

        if self._fitted:
            raise ConfigError("this Experiment has trained already; build it again (cnnlab.build) for another run")
        self._fitted = True
        result = fit(self.session, run_dir=Path(run_dir) if run_dir is not None else None, quiet=quiet,
                     progress=progress, objects=self._objects)
        return Run(result.run_dir)


def build(config: ConfigLike = None, *, model: Any = None, data: Any = None, loss: Any = None,
          augment: list[Any] | None = None, callbacks: list[Any] | None = None,
          overrides: list[str] | tuple[str, ...] = (), **sections: Any) -> Experiment:
    """Everything a run needs, checked and built, nothing written (see the module docstring)."""
    from cnnlab.resolve import apply_overrides, resolve
    from cnnlab.studies.spec import yaml_value

    if _is_config(config) and not (model or data or loss or augment or callbacks or overrides or sections):
        return _built(config, [], {})  # already resolved (the command line's load_config): as it is
    imports.clear_copies()  # a new run uses the user's files as they are now
    raw, name = _raw(config)
    objects: dict[str, str] = {}
    if model is not None:
        _put(raw, "model", "name", model, objects)
    if loss is not None:
        _put(raw, "loss", "name", loss, objects)
    if data is not None:
        _put_data(raw, data, objects)
    if augment is not None:
        raw["augment"] = [_op(op, f"augment[{i}]", objects) for i, op in enumerate(augment)]
    given_callbacks: list[Any] = []
    for i, cb in enumerate(callbacks or []):
        if isinstance(cb, (str, dict)) or isinstance(cb, type):
            raw.setdefault("callbacks", []).append(_op(cb, f"callbacks[{i}]", objects))
        else:
            given_callbacks.append(cb)
            objects[f"callbacks[{i}] (Python)"] = f"a {type(cb).__name__} object: pass it again to cnnlab.resume"
    items = list(overrides)
    for key, value in sections.items():
        if "." in key:
            items.append(f"{key}={yaml_value(value)}")
        elif isinstance(value, dict) and isinstance(raw.get(key), dict):
            _merge(raw, key, value)
        else:
            raw[key] = copy.deepcopy(value)
    apply_overrides(raw, items)
    absolutize(raw, Path.cwd())
    raw.setdefault("name", name)
    return _built(resolve(raw), given_callbacks, objects)


def _built(cfg: Any, callbacks: list[Any], objects: dict[str, str]) -> Experiment:
    from cnnlab import rundir
    from cnnlab.training.session import build_session

    rundir.check_writable(cfg.train.out_dir)  # before any data are read
    return Experiment(build_session(cfg, callbacks=callbacks), objects)


def _is_config(config: Any) -> bool:
    return hasattr(config, "to_dict") and hasattr(config, "model_dump")


def train(config: ConfigLike = None, *, model: Any = None, data: Any = None, loss: Any = None,
          augment: list[Any] | None = None, callbacks: list[Any] | None = None,
          overrides: list[str] | tuple[str, ...] = (), quiet: bool = False, progress: bool | None = None,
          run_dir: str | Path | None = None, **sections: Any) -> Any:
    """Build (see build) and train; returns the cnnlab.Run of the new run directory."""
    experiment = build(config, model=model, data=data, loss=loss, augment=augment, callbacks=callbacks,
                       overrides=overrides, **sections)
    return experiment.fit(quiet=quiet, progress=progress, run_dir=run_dir)


def resume(run: Any, *, callbacks: list[Any] | None = None, quiet: bool = False, progress: bool | None = None,
           code: str | None = None, model: Any = None, data: Any = None) -> Any:
    """Continue an interrupted run from its last checkpoint (see cnnlab.Run.resume); `code`: check,
    stored or current (see cnnlab.Run)."""
    from cnnlab.api.run import Run

    return Run(getattr(run, "path", run), code=code).resume(callbacks=callbacks, quiet=quiet, progress=progress,
                                                           model=model, data=data)


# ----------------------------------------------------------------------------- configs and objects


def _raw(config: ConfigLike) -> tuple[dict[str, Any], str]:
    """(raw config dict with absolute user-code paths, default run name)."""
    if config is None:
        return {}, "run"
    if _is_config(config):
        return config.to_dict(), config.name or "run"
    if isinstance(config, dict):
        raw = copy.deepcopy(config)
        absolutize(raw, Path.cwd())
        return raw, "run"
    path = Path(config)
    raw = read_yaml(path)
    absolutize(raw, path.resolve().parent)
    return raw, path.stem


def _selector(section: str) -> str:
    return "format" if section == "data" else "name"


def reference_of(obj: Any, where: str) -> str:
    """How a config names an object handed over from Python: a class or function that another
    process can import by its file or module, `__main__:Name` for one defined in a notebook, or a
    live `object:` reference for an instance."""
    if inspect.isclass(obj) or inspect.isfunction(obj):
        ref = imports.reference_to(obj)
        if ref is not None:
            imports.adopt(obj)
            return ref
    return live.keep(obj)


def _put(raw: dict[str, Any], section: str, key: str, obj: Any, objects: dict[str, str]) -> None:
    """model=/loss=: a name or a section mapping merges into the config; an object replaces the name
    (the section's fixed keys and options written beside it are kept)."""
    if isinstance(obj, str):
        raw.setdefault(section, {})
        raw[section] = {**({} if raw[section].get(key) != obj else raw[section]), key: obj}
        return
    if isinstance(obj, dict):
        _merge(raw, section, obj)
        return
    ref = reference_of(obj, f"{section}.{key}")
    if live.is_live(ref):
        objects[f"{section}.{key}"] = f"a {type(obj).__name__} object passed from Python"
    old = raw.get(section) if isinstance(raw.get(section), dict) else {}
    kept = {k: v for k, v in old.items() if k in _fixed_keys(section)}
    raw[section] = {**kept, key: ref}


def _merge(raw: dict[str, Any], section: str, value: dict[str, Any]) -> None:
    """A section's keys set from a dict; one that names another function (loss={"name": "focal.py:focal"})
    drops the options of the one it replaces and keeps the section's own keys (loss.l2), as an
    override on the command line does."""
    old = raw.get(section) if isinstance(raw.get(section), dict) else {}
    selector = _selector(section)
    if selector in value and value[selector] != old.get(selector) and section in _OPEN:
        old = {k: v for k, v in old.items() if k in _fixed_keys(section) and k != selector}
    raw[section] = {**old, **copy.deepcopy(value)}


_OPEN = ("data", "model", "optim", "schedule", "loss")


def _fixed_keys(section: str) -> set[str]:
    from cnnlab.config import OPEN_SECTIONS

    return set(OPEN_SECTIONS[section].model_fields)


def _put_data(raw: dict[str, Any], data: Any, objects: dict[str, str]) -> None:
    """data=: a `data:` mapping (with its format) merges; a dataset or arrays become a live format."""
    if isinstance(data, dict) and not set(data) <= {"train", "val", "dev", "valid", "validation", "test"}:
        raw["data"] = {**raw.get("data", {}), **data}  # a data: section (format, path, options), not splits
        return
    if isinstance(data, (str, Path)):
        raw.setdefault("data", {})["path"] = str(data)
        return
    ref = live.keep(data)
    objects["data.format"] = f"a {type(data).__name__} object passed from Python"
    old = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    kept = {k: v for k, v in old.items() if k in DataConfig.model_fields and k not in ("format", "path")}
    raw["data"] = {**kept, "format": ref, "path": ""}


def _op(op: Any, where: str, objects: dict[str, str]) -> Any:
    """An augment: op or a callbacks: item: as written, or an object named by its reference."""
    if isinstance(op, (str, dict)):
        return op
    ref = reference_of(op, where)
    if live.is_live(ref):
        objects[where] = f"a {type(op).__name__} object passed from Python"
    return ref
