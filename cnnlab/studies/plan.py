"""What a study runs: variants (sets of overrides) x seeds x folds, each run with a stable key.
A learning curve's variants are its curves (the axes' grid, or the base alone) x its sizes, a
size being an override of data.train_per_class or data.train_fraction. With adaptive seeds the
plan holds every seed a variant may run (up to max); adaptive.py says which of them it does.

A run's key is derived from its overrides, seed and fold only, so it survives reruns,
edits that add seeds or values, and code changes that add config defaults.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from cnnlab.config import Config
from cnnlab.errors import ConfigError
from cnnlab.resolve import apply_overrides, resolve
from cnnlab.studies.spec import (
    SIZE_KEYS,
    Param,
    Study,
    choice_value,
    fmt_value,
    size_key,
    yaml_value,
)
from cnnlab.usercode.paths import absolutize


def digest(obj: Any, n: int = 10) -> str:
    """A short, stable hash of plain data."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:n]


def get_key(d: dict[str, Any], key: str) -> Any:
    """The value at a dotted key of a nested dict, or None."""
    node: Any = d
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


@dataclass
class Variant:
    """One setting of the varied keys; `levels` names its value on each axis."""

    label: str
    overrides: dict[str, Any]
    levels: dict[str, str] = field(default_factory=dict)
    axis: str | None = None  # ablation: the axis this variant varies (None: the base)
    is_base: bool = False
    fixed_key: str | None = None  # search: the trial's own key ("t0007")
    curve: str | None = None  # learning_curve: the curve this point lies on ("base", or its axis values)
    size: int | float | None = None  # learning_curve: images per class, or a fraction of the training split

    @functools.cached_property
    def key(self) -> str:
        """A digest of the overrides (computed once: a variant's overrides never change after planning)."""
        return self.fixed_key or digest(self.overrides)


@dataclass(frozen=True)
class Unit:
    """One run: a variant with one seed and, under cross-validation, one fold."""

    variant: Variant
    seed: int
    fold: int | None

    @property
    def key(self) -> str:
        return run_key(self.variant.key, self.seed, self.fold)

    @property
    def run_name(self) -> str:
        return run_name(self.variant, self.seed, self.fold)


def run_key(variant_key: str, seed: int, fold: int | None) -> str:
    return f"{variant_key}-s{seed}" + (f"-f{fold}" if fold is not None else "")


def run_name(variant: Variant, seed: int, fold: int | None) -> str:
    """A readable, unique folder name: the variant label, seed, fold and a short key."""
    slug = re.sub(r"[^A-Za-z0-9.=,+-]+", "_", variant.label).strip("_")[:80] or "run"
    return f"{slug}_s{seed}" + (f"_f{fold}" if fold is not None else "") + f"_{variant.key[:6]}"


@dataclass
class Plan:
    """The variants and runs of a study, with every run config checked up front."""

    study: Study
    base_cfg: Config
    variants: list[Variant]
    seeds: list[int]
    folds: list[int | None]

    @property
    def units(self) -> list[Unit]:
        """The runs known to be wanted before any result: every seed, or with adaptive seeds the pilot
        (adaptive.wanted_units adds what the results ask for)."""
        rule = self.study.seed_rule
        seeds = self.seeds[: rule.min] if rule is not None else self.seeds
        return [Unit(v, s, f) for v in self.variants for s in seeds for f in self.folds]

    @property
    def possible_units(self) -> list[Unit]:
        """Every run the study may make (with adaptive seeds: every variant at up to max seeds)."""
        return [Unit(v, s, f) for v in self.variants for s in self.seeds for f in self.folds]

    def unit_by_key(self) -> dict[str, Unit]:
        return {u.key: u for u in self.possible_units}

    def run_config(self, overrides: dict[str, Any], seed: int, fold: int | None, name: str) -> Config:
        """The resolved config of one run."""
        raw = run_raw(self.study.base_raw, overrides, seed, fold, len(self.folds), name)
        absolutize(raw, self.study.path.resolve().parent)  # FILE.py:NAME levels of an axis: relative to the study file
        return resolve(raw)

    @property
    def fingerprint(self) -> str:
        """What must not change under a running study: the base, the mode, the folds (and the space)."""
        base = {k: v for k, v in self.study.base_raw.items() if k != "name"}
        parts: dict[str, Any] = {"mode": self.study.mode, "base": base, "cv": self.study.spec.cv}
        if self.study.mode == "search":
            s = self.study.spec
            parts.update(space=s.search.model_dump(exclude={"n_trials"}), seeds=self.seeds,
                         metric=s.metric, direction=self.study.direction)
        return digest(parts, 16)


def run_raw(base_raw: dict[str, Any], overrides: dict[str, Any], seed: int, fold: int | None,
            n_folds: int, name: str) -> dict[str, Any]:
    """The raw config of one run: the base, the variant's keys, its seed and fold, its name.

    The keys go through the same path as command-line overrides, so a variant that switches
    a function (optim.name: adam) drops the base's options the new one does not take."""
    raw = copy.deepcopy(base_raw)
    items = [f"{k}={yaml_value(v)}" for k, v in overrides.items()]
    if fold is not None:
        items += [f"data.folds={n_folds}", f"data.fold={fold}"]
    apply_overrides(raw, items)
    raw["seed"] = seed
    raw["name"] = name
    return raw


def comparable(cfg: Config) -> dict[str, Any]:
    """A resolved config without the fields that name a run rather than define it."""
    d = cfg.to_dict()
    d.pop("name", None)
    return d


def build_plan(study: Study, check_data: bool = True) -> Plan:
    """Enumerate and resolve every variant; a bad value is a ConfigError naming its axis.
    check_data: a learning curve's sizes are checked against the data's classes (which reads
    the dataset); a study read back for a report skips that."""
    where = str(study.path)
    try:
        base_cfg = resolve(study.base_raw)
    except ConfigError as e:
        raise ConfigError(f"{where}: base: {e}") from None
    rule = study.seed_rule
    if rule is not None:
        seeds = list(range(rule.start, rule.start + rule.max))
    else:
        seeds = study.spec.seeds if study.spec.seeds is not None else [base_cfg.seed]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}: seeds: {seeds} repeats a seed; list each once")
    folds: list[int | None] = list(range(study.spec.cv)) if study.spec.cv else [None]
    variants = enumerate_variants(study)
    plan = Plan(study, base_cfg, [], seeds, folds)
    base_check = comparable(plan.run_config({}, seeds[0], folds[0], "check"))
    kept: list[Variant] = []
    for v in variants:
        try:
            cfg = plan.run_config(v.overrides, seeds[0], folds[0], "check")
        except ConfigError as e:
            raise ConfigError(f"{where}: axes: {v.label}: {e}") from None
        same = comparable(cfg) == base_check
        if study.mode == "ablation" and not v.is_base and same:
            # A level equal to the base is the base itself: run once, shown on its axis.
            kept[0].levels[v.axis or ""] = v.levels[v.axis or ""]
            continue
        v.is_base = v.is_base or same
        kept.append(v)
    if study.mode == "search":
        for p in study.params:
            for value in _probe_values(p):
                try:
                    plan.run_config(p.overrides(value), seeds[0], folds[0], "check")
                except ConfigError as e:
                    raise ConfigError(f"{where}: search.params.{p.name}={value}: {e}") from None
    plan.variants = kept
    if study.mode == "learning_curve" and check_data:
        from cnnlab.studies.curve_data import check_data  # reads the data: torch

        check_data(plan)
    return plan


def enumerate_variants(study: Study) -> list[Variant]:
    """Ablation: the base, then each axis level alone; grid: the full product; search: none yet."""
    if study.mode == "ablation":
        out = [Variant("base", {}, axis=None, is_base=True)]
        for axis in study.axes:
            for lv in axis.levels:
                label = lv.label if lv.auto else f"{axis.name}={lv.label}"
                out.append(Variant(label, dict(lv.overrides), {axis.name: lv.label}, axis=axis.name))
        return out
    if study.mode == "grid":
        out = []
        for combo in itertools.product(*(a.levels for a in study.axes)):
            overrides: dict[str, Any] = {}
            for axis, lv in zip(study.axes, combo):
                clash = set(overrides) & set(lv.overrides)
                if clash:
                    raise ConfigError(f"{study.path}: axes.{axis.name}: sets {', '.join(sorted(clash))}, "
                                      "which another axis also sets; a grid needs each key on one axis")
                overrides.update(lv.overrides)
            label = ", ".join(lv.label if lv.auto else f"{a.name}={lv.label}" for a, lv in zip(study.axes, combo))
            out.append(Variant(label, overrides, {a.name: lv.label for a, lv in zip(study.axes, combo)}))
        return out
    if study.mode == "learning_curve":
        return curve_points(study)
    return []


def size_label(size: int | float) -> str:
    return f"{size}/class" if isinstance(size, int) else f"{size:g} of train"


def curve_points(study: Study) -> list[Variant]:
    """A learning curve's variants: each curve (the grid of its axes, or the base) at each size."""
    curves: list[tuple[str, dict[str, Any], dict[str, str]]] = [("base", {}, {})]
    if study.axes:
        curves = []
        for combo in itertools.product(*(a.levels for a in study.axes)):
            overrides: dict[str, Any] = {}
            for axis, lv in zip(study.axes, combo):
                if set(overrides) & set(lv.overrides):
                    raise ConfigError(f"{study.path}: axes.{axis.name}: sets a key another axis also sets; "
                                      "each key on one axis")
                overrides.update(lv.overrides)
            label = ", ".join(lv.label if lv.auto else f"{a.name}={lv.label}" for a, lv in zip(study.axes, combo))
            curves.append((label, overrides, {a.name: lv.label for a, lv in zip(study.axes, combo)}))
    key = size_key(study)
    for label, overrides, _ in curves:
        if any(k in SIZE_KEYS for k in overrides):
            raise ConfigError(f"{study.path}: axes: {label} sets {key}, which sizes: sets for every run")
    out = []
    for label, overrides, levels in curves:
        for n in study.sizes:
            point = f"{label}, n={size_label(n)}" if study.axes else f"n={size_label(n)}"
            out.append(Variant(point, {**overrides, key: n}, {**levels, "size": fmt_value(n)},
                               curve=label, size=n))
    return out


def search_variant(study: Study, key: str, params: dict[str, Any]) -> Variant:
    """The variant a search trial sampled, named by the trial's key."""
    overrides: dict[str, Any] = {}
    for p in study.params:
        if p.name in params:
            overrides.update(p.overrides(params[p.name]))
    levels = {p.name: fmt_value(params[p.name]) for p in study.params if p.name in params}
    return Variant(f"trial {int(key[1:])}", overrides, levels, fixed_key=key)


def trial_key(number: int) -> str:
    """The key of a search trial (kept by its retries): its first trial number."""
    return f"t{number:04d}"


def _probe_values(p: Param) -> list[Any]:
    """Values that exercise a search dimension's validation: its ends, or every choice."""
    if p.kind == "categorical":
        return [choice_value(lv) for lv in p.choices]
    if p.kind == "int":
        return [int(p.low), int(p.high)]
    return [p.low, p.high]
