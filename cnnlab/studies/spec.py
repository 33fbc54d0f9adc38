"""The study file: a base config, how to vary it, seeds, folds and the metric that decides.

    name: dropout                      # default: the file name
    base: ../mnist_lenet.yaml          # a config path (relative to this file) or an inline mapping
    overrides: {train.epochs: 5}       # dotted keys set on the base for every run
    mode: ablation                     # ablation | grid | search
    axes:                              # ablation and grid
      model.dropout: [0.0, 0.1, 0.5]   # a dotted key and its values
      optimizer:                       # named variants that set several keys together
        sgd: {optim.name: sgd, optim.momentum: 0.9}
        adam: {optim.name: adam, optim.lr: 0.001}
    search:                            # search only
      n_trials: 30
      params:
        optim.lr: {low: 1.0e-4, high: 0.1, log: true}
        train.batch_size: [32, 64, 128]
    seeds: [0, 1, 2]                   # or adaptive: {min: 3, max: 12, precision: 0.005} (adaptive.py)
    cv: 5
    mode: learning_curve               # every variant (axes: a curve each) at every size:
    sizes: [25, 50, 100, 200, 400]     # images per class (data.train_per_class), or fractions (data.train_fraction)
    target: 0.9                        # the study metric to reach: "about N images per class for 90%"
    metric: val_acc
    table: [val_acc, test_acc]         # the metrics in the table (the study metric always first), or:
    table: {metrics: [val_acc, test_acc], metric_style: error}   # accuracies shown as error = 1 - acc
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from cnnlab.config import SECTIONS, read_yaml
from cnnlab.errors import ConfigError, suggest
from cnnlab.registry import format_validation_error
from cnnlab.resolve import apply_overrides
from cnnlab.usercode.paths import absolutize

# Row columns a study can rank by: `val_acc` is the value at the selected (best-val) epoch,
# `best_`/`final_` the best over epochs and the last epoch's value.
METRIC = re.compile(r"^(best_|final_)?(train|val|test)_(loss|acc|top5|ece|balanced_acc|macro_f1)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchSpec(_Strict):
    n_trials: int = Field(gt=0)
    params: dict[str, Any] = Field(min_length=1)
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "halving", "none"] = "median"
    startup_trials: int = Field(3, ge=0)  # median: trials finished before any pruning
    warmup_epochs: int = Field(1, ge=0)  # median: epochs of every run never pruned
    min_epochs: int = Field(1, ge=1)  # halving: the first rung
    reduction_factor: int = Field(3, ge=2)  # halving: keep 1/reduction_factor per rung
    seed: int = 0  # sampler seed (exactly reproducible with one worker)


METRIC_STYLES = ("accuracy", "error")


class TableSpec(_Strict):
    """`table:` as a list of metrics (the old form) or a mapping with the display options."""

    metrics: list[str] | None = Field(None, min_length=1)  # default: the study metric and test_acc
    metric_style: Literal["accuracy", "error"] = "accuracy"  # error: accuracies (and top-5) shown as error = 1 - acc

    @model_validator(mode="before")
    @classmethod
    def _list_form(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {"metrics": value}
        if not isinstance(value, dict):
            raise PydanticCustomError("table", "give a list of metrics, e.g. [val_acc, test_acc], or a mapping "
                                      "{metrics: [val_acc, test_acc], metric_style: error}")
        return value

    @field_validator("metric_style", mode="before")
    @classmethod
    def _style(cls, value: Any) -> Any:
        if value not in METRIC_STYLES:
            raise PydanticCustomError("metric_style", "use error (shows 1 - accuracy) or accuracy"
                                      + suggest(str(value), METRIC_STYLES))
        return value


class SeedRule(_Strict):
    """`seeds: {min, max, precision}`: each variant runs `min` seeds, then as many more (up to `max`) as
    the 95% CIs of its mean and of its difference from the base need to be at most `precision` wide on
    each side (Stein's two-stage procedure: adaptive.py)."""

    min: int = Field(3, ge=2)  # the pilot seeds every variant runs; the spread is estimated from them
    max: int = Field(ge=2)  # no variant runs more seeds than this
    precision: float = Field(gt=0)  # the 95% CI half-width wanted, in the metric's units (0.005: half a point of accuracy)
    start: int = 0  # the seeds are start, start + 1, ...

    @model_validator(mode="after")
    def _order(self) -> SeedRule:
        if self.max < self.min:
            raise PydanticCustomError("seeds", "max ({max}) is below min ({min}); give max >= min",
                                      {"max": self.max, "min": self.min})
        return self


class StudySpec(_Strict):
    name: str | None = None
    base: str | dict[str, Any]
    overrides: dict[str, Any] = Field(default_factory=dict)
    mode: Literal["ablation", "grid", "search", "learning_curve"]
    axes: dict[str, Any] = Field(default_factory=dict)
    search: SearchSpec | None = None
    seeds: list[int] | SeedRule | None = None  # a list, or {min, max, precision} for adaptive seeds
    sizes: list[Any] | None = None  # learning_curve: images per class (ints) or fractions of the training split
    target: float | None = None  # learning_curve: the study metric to reach (default: 10% less error than the largest size's)
    cv: int | None = Field(None, ge=2)
    metric: str = "val_acc"
    direction: Literal["auto", "maximize", "minimize"] = "auto"
    table: TableSpec | None = None  # a list of metrics, or {metrics: [...], metric_style: error}
    out_dir: str = "studies"
    workers: int = Field(1, ge=1)

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, value: Any) -> Any:
        if value is None or isinstance(value, list) and value:
            return value
        if isinstance(value, dict):
            try:
                return SeedRule.model_validate(value)
            except pydantic.ValidationError as e:
                raise PydanticCustomError("seeds", "{msg}", {"msg": _seed_rule_error(e)}) from None
        raise PydanticCustomError("seeds", "give a list of seeds, e.g. [0, 1, 2], or adaptive seeds "
                                  "{min: 3, max: 12, precision: 0.005}")


@dataclass(frozen=True)
class Level:
    """One value of an axis: its label and the dotted keys it sets."""

    label: str
    overrides: dict[str, Any]
    value: Any = None  # the plain value for a one-key axis (plots use it), else None
    auto: bool = False  # the label lists the keys it sets ("optim.name=sgd, optim.momentum=0.9")


@dataclass(frozen=True)
class Axis:
    """A varied dotted key, or a named group of settings, with its levels in file order."""

    name: str
    levels: tuple[Level, ...]

    @property
    def is_key(self) -> bool:
        return all(lv.overrides.keys() == {self.name} for lv in self.levels)


@dataclass(frozen=True)
class Param:
    """One search dimension."""

    name: str
    kind: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Level, ...] = ()

    def overrides(self, value: Any) -> dict[str, Any]:
        """The dotted keys a sampled value sets (named choices may set several)."""
        if self.kind == "categorical":
            level = next(lv for lv in self.choices if choice_value(lv) == value)
            return dict(level.overrides)
        return {self.name: value}


@dataclass
class Study:
    """A parsed, checked study file (configs are resolved later, by the plan)."""

    path: Path
    spec: StudySpec
    name: str
    base_raw: dict[str, Any]  # the base config with study and command-line overrides applied
    axes: list[Axis]
    params: list[Param]
    direction: Literal["maximize", "minimize"]
    table_metrics: list[str]
    metric_style: Literal["accuracy", "error"] = "accuracy"  # table.metric_style: accuracy or error (1 - acc)

    sizes: list[int | float] = field(default_factory=list)  # learning_curve: ascending, ints or fractions

    @property
    def mode(self) -> str:
        return self.spec.mode

    @property
    def seed_rule(self) -> SeedRule | None:
        """Adaptive seeds, or None for a fixed list."""
        return self.spec.seeds if isinstance(self.spec.seeds, SeedRule) else None

    @property
    def folder(self) -> Path:
        return Path(self.spec.out_dir).expanduser() / self.name


def _seed_rule_error(e: pydantic.ValidationError) -> str:
    """The first problem of an adaptive `seeds:` mapping, in words."""
    first = e.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"unknown key '{key}'{suggest(key, list(SeedRule.model_fields))}; adaptive seeds take min, max, precision, start"
    if first["type"] == "missing":
        return f"{key} is missing; adaptive seeds need max and precision, e.g. {{min: 3, max: 12, precision: 0.005}}"
    return f"{key}: {first['msg']}" if key else first["msg"]


def load_study(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Study:
    """Read and check a study file; every problem is a ConfigError naming the file and key."""
    path = Path(path)
    spec = read_spec(path)
    where = f"{path}"
    base_raw = _base(spec, path)
    for key in spec.overrides:
        _check_key(key, f"{where}: overrides")
    try:  # the file's overrides, then the command line's, as `cnnlab train` applies them
        apply_overrides(base_raw, [f"{k}={yaml_value(v)}" for k, v in spec.overrides.items()])
        absolutize(base_raw, path.resolve().parent)  # user files named in the study file: relative to it
        apply_overrides(base_raw, list(overrides))
        absolutize(base_raw, Path.cwd())  # ... and on the command line: relative to where it is typed
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    name = spec.name or path.stem
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ConfigError(f"{where}: name: '{name}' is not a usable folder name; use letters, digits, '.', '_' and '-'")
    axes = [parse_axis(k, v, where) for k, v in spec.axes.items()]
    params: list[Param] = []
    if spec.mode == "search":
        if spec.search is None:
            raise ConfigError(f"{where}: search: mode 'search' needs a search section with n_trials and params")
        if spec.axes:
            raise ConfigError(f"{where}: axes: mode 'search' samples search.params; move the axes there")
        params = [parse_param(k, v, where) for k, v in spec.search.params.items()]
    else:
        if spec.search is not None:
            raise ConfigError(f"{where}: search: only used with mode: search (this study is mode: {spec.mode})")
        if not axes and spec.mode != "learning_curve":
            raise ConfigError(f"{where}: axes: mode '{spec.mode}' needs at least one axis, e.g. axes: {{model.dropout: [0.0, 0.5]}}")
    table = spec.table or TableSpec()
    metrics = [spec.metric, *(table.metrics or (["test_acc"] if spec.metric != "test_acc" else []))]
    for m in [spec.metric, *metrics]:
        if not METRIC.match(m):
            raise ConfigError(f"{where}: metric: '{m}' is not a run metric; use e.g. val_acc, test_acc, "
                              "best_val_loss, final_train_acc ((best_|final_)(train|val|test)_(loss|acc|top5|ece|balanced_acc|macro_f1))")
    if spec.metric.startswith(("test_", "best_test", "final_test")) and spec.mode == "search":
        raise ConfigError(f"{where}: metric: searching on '{spec.metric}' tunes on the test set; use a val_ metric")
    direction = spec.direction if spec.direction != "auto" else default_direction(spec.metric)
    _check_seeds(spec, where)
    return Study(path, spec, name, base_raw, axes, params, direction, list(dict.fromkeys(metrics)),
                 table.metric_style, _sizes(spec, where))


def _check_seeds(spec: StudySpec, where: str) -> None:
    if not isinstance(spec.seeds, SeedRule):
        return
    if spec.mode == "search":
        raise ConfigError(f"{where}: seeds: adaptive seeds work with mode ablation, grid or learning_curve; a search "
                          "trial runs all its seeds at once, so give a list, e.g. seeds: [0, 1, 2]")
    if spec.cv:
        raise ConfigError(f"{where}: seeds: adaptive seeds count independent runs, and the folds of one seed are not "
                          "independent; remove cv: or give a list of seeds")


SIZE_KEYS = ("data.train_per_class", "data.train_fraction")


def size_key(study: Study) -> str:
    """The data key a learning curve's sizes set: images per class, or a fraction of every class."""
    return SIZE_KEYS[0] if all(isinstance(n, int) for n in study.sizes) else SIZE_KEYS[1]


def _sizes(spec: StudySpec, where: str) -> list[int | float]:
    """learning_curve's sizes, ascending: all whole images per class, or all fractions in (0, 1]."""
    at = f"{where}: sizes"
    if spec.mode != "learning_curve":
        for key in ("sizes", "target"):
            if getattr(spec, key) is not None:
                raise ConfigError(f"{where}: {key}: only used with mode: learning_curve (this study is mode: {spec.mode})")
        return []
    if not spec.sizes or len(spec.sizes) < 2:
        raise ConfigError(f"{at}: a learning curve needs at least two sizes, e.g. sizes: [50, 100, 200, 400] "
                          "(images per class) or [0.1, 0.25, 0.5, 1.0] (fractions of the training split)")
    numbers = [v for v in spec.sizes if isinstance(v, (int, float)) and not isinstance(v, bool)]
    whole = all(isinstance(v, int) and v > 0 for v in spec.sizes)
    fractions = len(numbers) == len(spec.sizes) and all(isinstance(v, float) and 0 < v <= 1 for v in numbers)
    if not (whole or fractions):
        raise ConfigError(f"{at}: give whole numbers of images per class (e.g. [50, 100, 200]) or fractions of the "
                          f"training split in (0, 1] (e.g. [0.1, 0.5, 1.0]), not a mix (got {spec.sizes})")
    if len(set(spec.sizes)) != len(spec.sizes):
        raise ConfigError(f"{at}: {spec.sizes} repeats a size; list each once")
    metric = epoch_metric(spec.metric)
    if metric.startswith("train_"):
        raise ConfigError(f"{where}: metric: a learning curve measures held-out images; use a val_ or test_ metric, "
                          f"not '{spec.metric}'")
    if spec.target is not None and not metric.endswith(("_loss",)) and not 0 < spec.target < 1:
        raise ConfigError(f"{where}: target: {spec.target:g} is not an accuracy in (0, 1) for metric {spec.metric}; "
                          "e.g. target: 0.9 for 90%")
    return sorted(spec.sizes)


def read_spec(path: Path) -> StudySpec:
    """The study file checked against the schema (the base config is not read here)."""
    raw = read_yaml(path)
    try:
        return StudySpec.model_validate(raw)
    except pydantic.ValidationError as e:
        nested = e.errors()[0]["loc"][:1] == ("table",)  # a misspelt table key is matched among its own
        known = list((TableSpec if nested else StudySpec).model_fields)
        raise ConfigError(f"{path}: {format_validation_error(e, '', known)}") from None


def default_direction(metric: str) -> Literal["maximize", "minimize"]:
    """Losses and calibration errors go down, accuracies go up."""
    return "minimize" if metric.endswith(("_loss", "_ece")) else "maximize"


def _base(spec: StudySpec, path: Path) -> dict[str, Any]:
    if isinstance(spec.base, dict):
        raw = copy.deepcopy(spec.base)
        absolutize(raw, path.resolve().parent)
        return raw
    base_path = Path(spec.base).expanduser()
    if not base_path.is_absolute():
        base_path = path.parent / base_path
    if not base_path.is_file():
        raise ConfigError(f"{path}: base: config file {base_path} not found; give a path relative to the study file")
    raw = read_yaml(base_path)
    absolutize(raw, base_path.resolve().parent)  # the base config's own imports: and FILE.py:NAME
    raw.setdefault("name", base_path.stem)
    return raw


def _check_key(key: Any, where: str) -> str:
    if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", key):
        raise ConfigError(f"{where}: '{key}' is not a dotted config key (e.g. model.dropout)")
    if key.split(".")[0] not in SECTIONS:
        first = key.split(".")[0]
        raise ConfigError(f"{where}: '{key}': unknown section '{first}'{suggest(first, SECTIONS)}")
    return key


def yaml_value(value: Any) -> str:
    """A value as YAML text that reads back as the same value (an override's right-hand side)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    return text[: -len("\n...")].rstrip() if text.endswith("\n...") else text


def fmt_value(value: Any) -> str:
    """A value as a short label: YAML-like scalars, JSON for lists."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _level(axis: str, label: str | None, value: Any, where: str) -> Level:
    if isinstance(value, dict):
        if not value:
            raise ConfigError(f"{where}: an empty mapping sets nothing; give dotted keys and values")
        overrides = {_check_key(k, where): v for k, v in value.items()}
        auto = ", ".join(f"{k}={fmt_value(v)}" for k, v in overrides.items())
        return Level(label if label is not None else auto, overrides, auto=label is None)
    _check_key(axis, f"{where} (an axis of plain values must be named by a dotted config key)")
    return Level(label if label is not None else fmt_value(value), {axis: value}, value)


def parse_axis(name: str, spec: Any, where: str) -> Axis:
    """An axis from `key: [v1, v2]`, `name: [{k: v, ...}, ...]` or `name: {label: {k: v}, ...}`."""
    at = f"{where}: axes.{name}"
    if isinstance(spec, list):
        levels = [_level(name, None, v, f"{at}[{i}]") for i, v in enumerate(spec)]
    elif isinstance(spec, dict):
        levels = [_level(name, str(label), v, f"{at}.{label}") for label, v in spec.items()]
    else:
        raise ConfigError(f"{at}: expected a list of values or a mapping of named variants, got {spec!r}")
    if not levels:
        raise ConfigError(f"{at}: no values to try")
    labels = [lv.label for lv in levels]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{at}: values repeat ({', '.join(labels)}); each value once")
    return Axis(name, tuple(levels))


def choice_value(level: Level) -> Any:
    """What Optuna records for a categorical choice: the plain value, or the variant's name."""
    return level.value if len(level.overrides) == 1 and level.value is not None else level.label


def parse_param(name: str, spec: Any, where: str) -> Param:
    """A search dimension: {low, high[, log, step, type]}, a list of choices, or {choices: ...}."""
    at = f"{where}: search.params.{name}"
    if isinstance(spec, list) or (isinstance(spec, dict) and "choices" in spec):
        choices = spec if isinstance(spec, list) else spec["choices"]
        extra = set(spec) - {"choices", "type"} if isinstance(spec, dict) else set()
        if extra:
            raise ConfigError(f"{at}: unknown key(s) {', '.join(sorted(extra))} for a categorical parameter")
        axis = parse_axis(name, choices, where).levels
        for lv in axis:
            v = choice_value(lv)
            if not isinstance(v, (str, int, float, bool)) and v is not None:
                raise ConfigError(f"{at}: choice {lv.label} must be a number, string or bool; name list values, "
                                  "e.g. {choices: {narrow: {model.channels: [8, 16]}}}")
        return Param(name, "categorical", choices=tuple(axis))
    if not isinstance(spec, dict):
        raise ConfigError(f"{at}: expected {{low: .., high: ..}} or a list of choices, got {spec!r}")
    _check_key(name, at)
    unknown = set(spec) - {"type", "low", "high", "log", "step"}
    if unknown:
        raise ConfigError(f"{at}: unknown key(s) {', '.join(sorted(unknown))}; use type, low, high, log, step")
    try:
        low, high = float(spec["low"]), float(spec["high"])
    except KeyError as e:
        raise ConfigError(f"{at}: {e.args[0]} is missing") from None
    except (TypeError, ValueError):
        raise ConfigError(f"{at}: low and high must be numbers") from None
    kind = spec.get("type") or ("int" if all(isinstance(spec[k], int) and not isinstance(spec[k], bool)
                                             for k in ("low", "high")) else "float")
    if kind not in ("int", "float"):
        raise ConfigError(f"{at}: type must be float, int or categorical, got {kind!r}")
    log = bool(spec.get("log", False))
    if not low < high:
        raise ConfigError(f"{at}: low ({low:g}) must be below high ({high:g})")
    if log and low <= 0:
        raise ConfigError(f"{at}: a log range needs low > 0, got {low:g}")
    step = spec.get("step")
    if step is not None and log:
        raise ConfigError(f"{at}: step and log cannot be combined")
    if kind == "int" and (low != int(low) or high != int(high)):
        raise ConfigError(f"{at}: an int range needs whole-number low and high")
    return Param(name, kind, low, high, log, None if step is None else float(step))


def epoch_metric(metric: str) -> str:
    """The per-epoch metric behind a row metric (best_val_acc and final_val_acc: val_acc)."""
    for prefix in ("best_", "final_"):
        if metric.startswith(prefix):
            return metric[len(prefix):]
    return metric
