"""Study files: parsing, enumeration of variants and runs, run keys, one-line errors; the examples."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, write_config

from cnnlab.errors import ConfigError
from cnnlab.studies.plan import build_plan, trial_key
from cnnlab.studies.spec import load_study, parse_axis, read_spec


@pytest.fixture
def base(tmp_path, mnist_small):
    return write_config(tmp_path / "base.yaml", {"format": "idx", "path": str(mnist_small), "val_fraction": 0.2},
                        model={"name": "cnn", "channels": [4], "norm": "batch", "dropout": 0.0})


def study_file(tmp_path, **spec) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", **spec}, sort_keys=False))
    return path


def test_ablation_varies_each_axis_alone_and_folds_base_values_into_the_base(tmp_path, base):
    path = study_file(tmp_path, mode="ablation", seeds=[0, 1], axes={
        "model.dropout": [0.0, 0.2, 0.5],  # 0.0 is the base's value: that level is the base
        "optimizer": {"adam": {"optim.name": "adam", "optim.lr": 0.003},
                      "sgd": {"optim.name": "sgd", "optim.momentum": 0.9, "optim.lr": 0.05}},  # = base
        "norm": [{"model.norm": "none"}, {"model.norm": "group"}],
    })
    plan = build_plan(load_study(path))
    labels = [v.label for v in plan.variants]
    assert labels == ["base", "model.dropout=0.2", "model.dropout=0.5", "optimizer=adam",
                      "model.norm=none", "model.norm=group"]
    base_variant = plan.variants[0]
    assert base_variant.is_base and base_variant.levels == {"model.dropout": "0", "optimizer": "sgd"}
    assert len(plan.units) == 6 * 2 and len({u.key for u in plan.units}) == 12
    assert len({u.run_name for u in plan.units}) == 12
    # Switching the optimizer drops the base's SGD-only options (momentum) instead of failing.
    adam = plan.variants[3]
    cfg = plan.run_config(adam.overrides, 1, None, "x")
    assert cfg.optim.name == "adam" and cfg.optim.lr == 0.003 and "momentum" not in cfg.to_dict()["optim"]
    assert cfg.seed == 1 and cfg.name == "x" and cfg.model.dropout == 0.0


def test_run_keys_are_stable_and_survive_added_seeds(tmp_path, base):
    path = study_file(tmp_path, mode="grid", seeds=[0], axes={"model.dropout": [0.1, 0.3], "optim.lr": [0.01, 0.1]})
    first = build_plan(load_study(path))
    again = build_plan(load_study(path))
    assert [u.key for u in first.units] == [u.key for u in again.units]
    path.write_text(yaml.safe_dump({"base": "base.yaml", "mode": "grid", "seeds": [0, 1],
                                    "axes": {"model.dropout": [0.1, 0.3], "optim.lr": [0.01, 0.1]}}))
    more = build_plan(load_study(path))
    assert {u.key for u in first.units} < {u.key for u in more.units} and len(more.units) == 8
    assert first.fingerprint == more.fingerprint  # seeds may grow under a grid study
    assert build_plan(load_study(path, ["train.epochs=3"])).fingerprint != first.fingerprint
    assert trial_key(7) == "t0007"


def test_grid_is_the_full_product_with_cv_folds(tmp_path, base):
    path = study_file(tmp_path, mode="grid", cv=3, axes={
        "model.dropout": [0.1, 0.3], "train.batch_size": [32, 64, 128],
        "opt": {"a": {"optim.lr": 0.01}, "b": {"optim.lr": 0.1}}})
    plan = build_plan(load_study(path))
    assert len(plan.variants) == 2 * 3 * 2 and plan.folds == [0, 1, 2]
    assert len(plan.units) == 12 * 3  # one seed (the base's) x 3 folds
    v = plan.variants[-1]
    assert v.label == "model.dropout=0.3, train.batch_size=128, opt=b"
    cfg = plan.run_config(v.overrides, 0, 2, "x")
    assert (cfg.data.folds, cfg.data.fold, cfg.train.batch_size, cfg.optim.lr) == (3, 2, 128, 0.1)


def test_search_params(tmp_path, base):
    path = study_file(tmp_path, mode="search", search={"n_trials": 5, "params": {
        "optim.lr": {"low": 0.0001, "high": 0.1, "log": True},
        "model.channels": {"choices": {"narrow": {"model.channels": [4]}, "wide": {"model.channels": [8]}}},
        "train.batch_size": [32, 64],
        "train.epochs": {"low": 1, "high": 3},
    }})
    study = load_study(path)
    kinds = {p.name: (p.kind, p.log) for p in study.params}
    assert kinds == {"optim.lr": ("float", True), "model.channels": ("categorical", False),
                     "train.batch_size": ("categorical", False), "train.epochs": ("int", False)}
    chans = next(p for p in study.params if p.name == "model.channels")
    assert chans.overrides("wide") == {"model.channels": [8]}
    assert build_plan(study).variants == []  # search variants come from the sampler


def test_axis_forms():
    ax = parse_axis("model.dropout", [0.0, 0.25], "f")
    assert ax.is_key and [lv.label for lv in ax.levels] == ["0", "0.25"] and ax.levels[1].value == 0.25
    ax = parse_axis("opt", [{"optim.name": "adam"}, {"optim.name": "sgd", "optim.momentum": 0.9}], "f")
    assert not ax.is_key and ax.levels[1].label == "optim.name=sgd, optim.momentum=0.9"
    ax = parse_axis("model.channels", [[8, 16], [16, 32]], "f")
    assert ax.levels[0].overrides == {"model.channels": [8, 16]} and ax.levels[0].label == "[8,16]"


@pytest.mark.parametrize("spec, message", [
    ({"mode": "ablation", "axes": {"model.dropuot": [0.1]}}, "axes: model.dropuot=0.1: model.dropuot: unknown key for cnn (did you mean 'model.dropout'?)"),
    ({"mode": "ablation", "axes": {"model.norm": ["batchy"]}}, "axes: model.norm=batchy: model.norm: Input should be 'batch',"),
    ({"mode": "grid", "axes": {"optim.lr": [-1]}}, "optim.lr: Input should be greater than 0"),
    ({"mode": "grid", "axes": {"dropout": [0.1]}}, "axes.dropout[0] (an axis of plain values must be named by a dotted config key)"),
    ({"mode": "grid", "axes": {"trian.epochs": [1]}}, "unknown section 'trian' (did you mean 'train'?)"),
    ({"mode": "grid", "axes": {"a": [{"optim.lr": 0.1}], "b": [{"optim.lr": 0.2}]}}, "axes.b: sets optim.lr, which another axis also sets"),
    ({"mode": "grid", "axes": {"model.dropout": [0.1, 0.1]}}, "axes.model.dropout: values repeat"),
    ({"mode": "grid"}, "axes: mode 'grid' needs at least one axis"),
    ({"mode": "search"}, "search: mode 'search' needs a search section"),
    ({"mode": "search", "search": {"n_trials": 3, "params": {"optim.lr": {"low": 0.1, "high": 0.01}}}}, "low (0.1) must be below high (0.01)"),
    ({"mode": "search", "search": {"n_trials": 3, "params": {"optim.lr": {"low": 0, "high": 1, "log": True}}}}, "a log range needs low > 0"),
    ({"mode": "search", "search": {"n_trials": 3, "params": {"train.batch_size": {"low": 0, "high": 64}}}}, "search.params.train.batch_size=0: train.batch_size: Input should be greater than 0"),
    ({"mode": "search", "metric": "test_acc", "search": {"n_trials": 3, "params": {"optim.lr": [0.1]}}}, "tunes on the test set"),
    ({"mode": "grid", "metric": "val_accuracy", "axes": {"optim.lr": [0.1]}}, "metric: 'val_accuracy' is not a run metric"),
    ({"mode": "grid", "seeds": [1, 1], "axes": {"optim.lr": [0.1]}}, "seeds: [1, 1] repeats a seed"),
    ({"mode": "grd", "axes": {"optim.lr": [0.1]}}, "mode: Input should be 'ablation', 'grid', 'search' or 'learning_curve'"),
    ({"mode": "grid", "axis": {"optim.lr": [0.1]}}, "axis: unknown key (did you mean 'axes'?)"),
    ({"mode": "grid", "base": "nope.yaml", "axes": {"optim.lr": [0.1]}}, "base: config file"),
])
def test_bad_study_files_are_one_line_errors_naming_the_key(tmp_path, base, spec, message):
    path = study_file(tmp_path, **spec)
    with pytest.raises(ConfigError) as info:
        build_plan(load_study(path))
    text = str(info.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


EXAMPLES = ROOT / "configs" / "studies"
# file -> (mode, variants before folding base-equal levels into the base, seeds)
EXPECTED = {
    "tiny_imagenet_cnn_ablation.yaml": ("ablation", 1 + 4 + 2 + 3 + 3, 3),
    "tiny_imagenet_resnet_ablation.yaml": ("ablation", 1 + 4 + 2 + 3 + 3, 3),
    "cifar10_small_vgg_ablation.yaml": ("ablation", 1 + 3 + 2 + 3 + 4 + 3 + 3 + 3, 3),
    "mnist_lenet_grid.yaml": ("grid", 3 * 3 * 3 * 2, 2),
    "mnist_lenet_scratch_grid.yaml": ("grid", 2 * 2 * 2 * 2, 2),
    "mnist_lenet_search.yaml": ("search", 0, 1),
    # The write-ups as written (tests/test_as_written.py checks their nets and levels).
    "cifar10_small_vgg_as_written.yaml": ("ablation", 1 + 2 + 2 + 7 + 3 + 4 + 2 + 3, 2),
    "mnist_lenet_as_written.yaml": ("grid", 4 * 4 * 2 * 5, 1),
    "tiny_imagenet_cnn_as_written.yaml": ("ablation", 1 + 6 + 2 + 4 + 3, 1),
    "tiny_imagenet_resnet_as_written.yaml": ("ablation", 1 + 6 + 2 + 4 + 3, 1),
    "faces_alexnet_as_written.yaml": ("ablation", 1 + 2, 1),
    "fashion_mnist_npy_resnet_as_written.yaml": ("ablation", 1 + 2, 1),
    # Batch norm and the loss landscape (train.probe; tests/test_study_probe.py runs a small one).
    "cifar10_bn_landscape_sgd.yaml": ("grid", 2 * 3, 2),
    "cifar10_bn_landscape_adam.yaml": ("grid", 2 * 4, 2),
}


def test_every_example_is_listed():
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_study_files_parse_and_enumerate(name):
    path = EXAMPLES / name
    spec = read_spec(path)
    mode, variants, seeds = EXPECTED[name]
    assert spec.mode == mode and isinstance(spec.base, str) and (path.parent / spec.base).resolve().parent == ROOT / "configs"
    axes = [parse_axis(k, v, str(path)) for k, v in spec.axes.items()]
    count = 1 + sum(len(a.levels) for a in axes) if mode == "ablation" else math.prod(len(a.levels) for a in axes)
    assert (count if axes else 0) == variants
    assert len(spec.seeds or [0]) == seeds


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_studies_resolve_against_their_presets(name):
    """Every run config of the example checks out (needs the preset it names in configs/)."""
    path = EXAMPLES / name
    preset = (path.parent / read_spec(path).base).resolve()
    if not preset.is_file():
        pytest.skip(f"preset {preset.name} is not in configs/ yet")
    plan = build_plan(load_study(path))
    mode, variants, seeds = EXPECTED[name]
    folded = sum(1 for v in plan.variants[0].levels) if mode == "ablation" else 0
    assert len(plan.variants) == variants - folded
    assert len(plan.units) == (variants - folded) * seeds


def test_storage_urls():
    from cnnlab.studies.store import database_url, storage_label

    assert "secret" not in storage_label("postgresql://ann:secret@db.lab:5432/studies", Path("x"))
    assert storage_label(None, Path("studies/s")) == "studies/s/optuna-journal.log"
    assert database_url("postgresql://ann@db/studies").startswith(("postgresql+psycopg2://", "postgresql+psycopg://"))
    assert database_url("mysql://ann@db/studies") == "mysql://ann@db/studies"


@pytest.mark.parametrize("value", [0.1, 1e-38, 1e-4, 3, True, None, "sgd", "1e-3", "a b", "", [8, 16], {"a": [1, 2.5]}, 1.0e+38])
def test_values_pass_through_override_text_unchanged(value):
    from cnnlab.studies.spec import yaml_value

    assert yaml.safe_load(yaml_value(value)) == value and type(yaml.safe_load(yaml_value(value))) is type(value)
