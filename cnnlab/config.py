"""Config schema, YAML loading, dotted overrides and validation with "did you mean" hints.

The fixed sections are pydantic models. The options of registered things (a data format,
a model, an optimizer, a schedule, a loss, an augmentation) are validated against the
signature of the function registered under that name, so adding one needs no edit here.
"""

from __future__ import annotations

import copy
import typing
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from cnnlab.errors import ConfigError, suggest
from cnnlab.registry import format_validation_error


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    """A section whose extra keys belong to the registered function it names."""

    model_config = ConfigDict(extra="allow")


class DataConfig(_Open):
    format: str
    path: str
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    limit_train: int | None = Field(None, gt=0)
    normalize: bool = True
    cache: bool = True
    cache_dir: str | None = None
    # auto: decoded images stay in memory when they take under a quarter of the free RAM
    # (and GPU memory); otherwise (or with false) images are decoded per batch from the files.
    in_memory: Literal["auto", True, False] = "auto"
    workers: int | None = Field(None, ge=0)  # file-backed loader processes; None: one per CPU core
    # Cross-validation: fold `fold` of `folds` stratified folds of train becomes the validation split.
    folds: int | None = Field(None, ge=2)
    fold: int | None = Field(None, ge=0)


class ModelConfig(_Open):
    name: str


class OptimConfig(_Open):
    name: str = "sgd"
    lr: float = Field(0.01, gt=0.0)


class ScheduleConfig(_Open):
    name: str = "none"
    # Linear warm-up over this many epochs (fractions allowed), counted in optimizer steps;
    # the named schedule starts when it ends (see cnnlab/train/schedule.py).
    warmup_epochs: float = Field(0.0, ge=0.0)


class LossConfig(_Open):
    name: str = "cross_entropy"
    # Explicit L2 penalty l2/2 * sum(w**2), added to the data loss and logged as train_l2.
    l2: float = Field(0.0, ge=0.0)
    # Which parameters it covers: conv/linear weights only, or every trainable parameter.
    l2_params: Literal["weights", "all"] = "weights"


class EarlyStopConfig(_Strict):
    monitor: str = "val_acc"
    patience: int = Field(5, ge=1)
    mode: Literal["auto", "min", "max"] = "auto"  # auto: max for *_acc / *_top5, min otherwise
    min_delta: float = Field(0.0, ge=0.0)


class TrainConfig(_Strict):
    epochs: int = Field(10, gt=0)
    batch_size: int = Field(128, gt=0)
    eval_batch_size: int = Field(1024, gt=0)
    out_dir: str = "runs"
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    # auto: NHWC where it is proven safe and faster (CUDA; x86 CPUs on oneDNN's AVX2 kernels), else NCHW
    channels_last: Literal["auto"] | bool = "auto"
    grad_clip: float | None = Field(None, gt=0.0)  # max global gradient norm
    grad_clip_value: float | None = Field(None, gt=0.0)  # clamp every gradient element to +-value
    ema: float | None = Field(None, gt=0.0, lt=1.0)  # EMA decay of the weights; evaluation uses them
    early_stop: EarlyStopConfig | None = None
    tta: Literal["none", "hflip"] = "none"  # test-time augmentation in every evaluation
    compile: bool = False  # torch.compile the model for training steps
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    threads: int | None = Field(None, gt=0)


class Config(_Strict):
    name: str | None = None
    seed: int = 0
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    engine: Literal["torch", "scratch"] = "torch"  # scratch: the NumPy engine (cnnlab.scratch)
    data: DataConfig
    augment: list[dict[str, Any]] = Field(default_factory=list)
    model: ModelConfig
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form: the resolved config written into every run directory."""
        return self.model_dump(mode="json")

    def options(self, section: str, selector: str) -> dict[str, Any]:
        """The options of an open section without its selector key (model minus `name`)."""
        d = getattr(self, section).model_dump()
        d.pop(selector)
        return d


SECTIONS = list(Config.model_fields)


# ----------------------------------------------------------------------------- loading


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config, apply KEY=VALUE overrides, validate everything, resolve defaults."""
    path = Path(path)
    raw = read_yaml(path)
    apply_overrides(raw, overrides)
    raw.setdefault("name", path.stem)
    try:
        return resolve(raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML mapping, turning every failure into one clear line."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; a config is a YAML file") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping of sections, got {type(data).__name__}")
    return data


# Open sections and the key that picks their registered function.
SELECTORS = {"model": "name", "optim": "name", "schedule": "name", "loss": "name", "data": "format"}


def apply_overrides(raw: dict[str, Any], items: list[str] | tuple[str, ...]) -> None:
    """Apply KEY=VALUE overrides in order.

    An override that switches a section to another function (optim.name=adam over a file that
    sets optim.momentum) drops the file's options the new function does not take, so switching
    works from the command line and in studies; options given as overrides are always kept.
    """
    before = copy.deepcopy(raw)
    given = [apply_override(raw, item) for item in items]
    for section, selector in SELECTORS.items():
        node = raw.get(section)
        old = before.get(section)
        if f"{section}.{selector}" not in given or not isinstance(node, dict) or not isinstance(old, dict):
            continue
        if node.get(selector) == old.get(selector):
            continue
        accepted = _accepted_options(section, node.get(selector))
        if accepted is None:
            continue  # an unknown name: validation will say so
        for key in list(node):
            if key not in accepted and f"{section}.{key}" not in given and key in old:
                del node[key]


def _accepted_options(section: str, name: Any) -> set[str] | None:
    from cnnlab.data.formats import FORMATS
    from cnnlab.models import MODELS
    from cnnlab.train.losses import LOSSES
    from cnnlab.train.optim import OPTIMIZERS
    from cnnlab.train.schedule import SCHEDULES

    registry = {"model": MODELS, "optim": OPTIMIZERS, "schedule": SCHEDULES, "loss": LOSSES, "data": FORMATS}[section]
    if name is None or str(name) not in registry:
        return None
    fixed = {"model": ModelConfig, "optim": OptimConfig, "schedule": ScheduleConfig, "loss": LossConfig,
             "data": DataConfig}[section].model_fields
    return set(fixed) | set(registry.get(str(name)).options())


def apply_override(raw: dict[str, Any], item: str) -> str:
    """Set a dotted key from 'a.b.c=VALUE'; VALUE is parsed as YAML (numbers, lists, bools)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}': expected KEY=VALUE, e.g. optim.lr=0.01")
    key, _, text = item.partition("=")
    key = key.strip()
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"override '{item}': '{key}' is not a dotted config key")
    if parts[0] not in SECTIONS:
        raise ConfigError(f"override '{key}': unknown section '{parts[0]}'{suggest(parts[0], SECTIONS)}")
    node = raw
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value
    return key


def resolve(raw: dict[str, Any]) -> Config:
    """Validate a raw config dict (fixed sections, then each registered thing's options)."""
    raw = copy.deepcopy(raw)
    raw["augment"] = normalize_augment(raw.get("augment"))
    try:
        cfg = Config.model_validate(raw)
    except pydantic.ValidationError as e:
        first = e.errors()[0]
        section = str(first["loc"][0]) if first["loc"] else ""
        known = SECTIONS if len(first["loc"]) == 1 else _fields_at(first["loc"][:-1])
        loc_rest = first["loc"][1:] if len(first["loc"]) > 1 else first["loc"]
        if len(first["loc"]) == 1:
            section = ""
        sub = pydantic.ValidationError.from_exception_data(
            e.title, [{**first, "loc": tuple(loc_rest)}]  # type: ignore[typeddict-item]
        )
        raise ConfigError(format_validation_error(sub, section, known)) from None
    return _validate_registered(cfg)


def _fields_at(loc: tuple) -> list[str]:
    """Field names of the (possibly nested, possibly optional) section at `loc`, for hints."""
    model: Any = Config
    for key in loc:
        info = getattr(model, "model_fields", {}).get(key)
        if info is None:
            return []
        ann = info.annotation
        # `EarlyStopConfig | None`: the section is the non-None member of the union.
        model = next((a for a in typing.get_args(ann) if hasattr(a, "model_fields")), ann)
    return list(getattr(model, "model_fields", {}))


def normalize_augment(items: Any, where: str = "augment") -> list[dict[str, Any]]:
    """Accept `- hflip`, `- random_crop: {padding: 4}`, `- {name: random_crop, padding: 4}`,
    or a bare value for an op's first option: `- resize: 40`, `- random_apply: [vflip, hflip]`."""
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
                opts = {_first_option(str(name), f"{where}[{i}]", opts): opts}
            out.append({"name": name, **opts})
        else:
            raise ConfigError(f"{where}[{i}]: expected a name or a one-key mapping, got {item!r}")
    return out


def _first_option(name: str, where: str, value: Any) -> str:
    """The option a bare value sets: the op's first keyword parameter."""
    from cnnlab.data.augment import AUGMENTATIONS

    options = AUGMENTATIONS.get(name, where).options()
    if not options:
        raise ConfigError(f"{where}.{name}: takes no options, got {value!r}")
    return options[0]


def _validate_registered(cfg: Config) -> Config:
    """Check each open section's extra keys against the function its selector names."""
    from cnnlab.data.augment import mixes_labels, resolve_ops
    from cnnlab.data.formats import FORMATS
    from cnnlab.models import MODELS
    from cnnlab.train.losses import LOSSES, SOFT_TARGET_LOSSES
    from cnnlab.train.optim import OPTIMIZERS
    from cnnlab.train.schedule import SCHEDULES

    data_fixed = set(DataConfig.model_fields)
    data = cfg.data.model_dump()
    fmt_opts = {k: v for k, v in data.items() if k not in data_fixed}
    fmt_opts = FORMATS.validate(cfg.data.format, fmt_opts, "data", also_known=sorted(data_fixed))
    cfg.data = DataConfig.model_validate({**{k: data[k] for k in data_fixed}, **fmt_opts})

    for section, selector, registry in (
        ("model", "name", MODELS),
        ("optim", "name", OPTIMIZERS),
        ("schedule", "name", SCHEDULES),
        ("loss", "name", LOSSES),
    ):
        opts = cfg.options(section, selector)
        fixed = {k for k in type(getattr(cfg, section)).model_fields if k != selector}
        extra = {k: v for k, v in opts.items() if k not in fixed}
        name = getattr(getattr(cfg, section), selector)
        resolved = registry.validate(name, extra, section, also_known=sorted(fixed))
        kept = {k: v for k, v in opts.items() if k in fixed}
        model_cls = type(getattr(cfg, section))
        setattr(cfg, section, model_cls.model_validate({selector: name, **kept, **resolved}))

    cfg.augment = resolve_ops(cfg.augment)  # nested op lists too, with the same "did you mean" errors
    mixing = mixes_labels(cfg.augment)
    if mixing and cfg.loss.name not in SOFT_TARGET_LOSSES:
        raise ConfigError(
            f"loss.name: '{cfg.loss.name}' cannot learn from the class probabilities that augment's {mixing} "
            f"produces; use a loss that can ({', '.join(sorted(SOFT_TARGET_LOSSES))}) or remove {mixing}"
        )
    return cfg
