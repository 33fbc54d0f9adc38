"""A study worker's runs share what they have in common (training/shared.py: the decoded dataset
kept by data/memo.py, samples.png drawn once, curves.png drawn at each run's end) and are still
exactly the runs `cnnlab train` makes alone: the same metrics.jsonl values, steps.csv and
checkpoint tensors."""

from __future__ import annotations

import math
from importlib import metadata
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from conftest import write_config

import cnnlab.data.build as build
import cnnlab.plots.curves as curves
from cnnlab.cli import main
from cnnlab.data import memo
from cnnlab.resolve import load_config
from cnnlab.rundir import Run
from cnnlab.studies.launch import open_study
from cnnlab.studies.results import Writer

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def nothing_kept():
    memo.forget()
    yield
    memo.forget()


def counting(monkeypatch, module: Any, name: str) -> list[int]:
    """Count the calls of module.name (still calling it)."""
    calls: list[int] = []
    real = getattr(module, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


def same_payload(a: Any, b: Any, where: str = "") -> None:
    """Every tensor, array and number of two checkpoint payloads equal, bit for bit."""
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            if k not in ("config", "seconds", "elapsed"):  # the run's name and folder; timings
                same_payload(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same_payload(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b), where
    else:
        assert a == b, where


def without_seconds(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.mark.parametrize("engine", ["torch", pytest.param("scratch", marks=pytest.mark.heavy)])
def test_study_runs_share_data_and_figures_and_equal_runs_made_alone(tmp_path, mnist_small, monkeypatch, capsys,
                                                                     engine):
    model = {"name": "cnn", "channels": [4], "norm": "batch"} if engine == "torch" else \
        {"name": "lenet", "batch_norm": True, "dropout": 0.3}
    write_config(tmp_path / "base.yaml",
                 {"format": "idx", "path": str(mnist_small), "limit_train": 160, "val_fraction": 0.25,
                  "limit_test": 100}, engine=engine, model=model, train={"epochs": 2, "batch_size": 40})
    study = tmp_path / "grid.yaml"
    study.write_text(yaml.safe_dump({"base": "base.yaml", "out_dir": str(tmp_path / "studies"), "mode": "grid",
                                     "axes": {"optim.lr": [0.05, 0.1]}, "seeds": [0], "metric": "test_acc"}))
    builds = counting(monkeypatch, build, "_build_data")
    reads = counting(monkeypatch, build.FORMATS, "build")
    drawn = counting(monkeypatch, curves, "curves_figure")

    assert main(["study", str(study)]) == 0, capsys.readouterr().err
    runs = sorted((tmp_path / "studies" / "grid" / "runs").iterdir())
    assert len(runs) == 2
    assert len(builds) == 1  # the dataset read once for both runs
    assert len(reads) == 1  # and that read is the one the study's check of the test split made
    assert len(drawn) == 2  # curves.png once per run, not once per epoch
    assert all(Run(r).curves_png.read_bytes().startswith(b"\x89PNG") for r in runs)
    assert Run(runs[0]).samples_png.read_bytes() == Run(runs[1]).samples_png.read_bytes()  # drawn once, copied

    # The tables while a study runs: after a run unless this process wrote them less than tables_every ago.
    opened = open_study(study, [], None)
    writer = Writer(opened.plan, opened.store, tmp_path / "tables", figure_every=math.inf, tables_every=3600)
    assert writer() is not None and (tmp_path / "tables" / "results.csv").is_file()
    (tmp_path / "tables" / "results.csv").unlink()
    assert writer() is None and writer.pending and not (tmp_path / "tables" / "results.csv").exists()
    writer.flush()  # what a worker that stops does: the tables show its last runs
    assert len((tmp_path / "tables" / "results.csv").read_text().splitlines()) == 3 and not writer.pending
    assert writer(final=True) is not None and (tmp_path / "tables" / "table.png").is_file()

    memo.forget()
    for run_dir in runs:  # each run again, alone, in a fresh run directory: nothing shared
        alone_dir = tmp_path / "alone"
        cfg = Run(run_dir).config_file
        drawn.clear()
        code = main(["train", str(cfg), f"train.out_dir={alone_dir}", "-q"])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert len(drawn) == 2  # alone, curves.png after every epoch: someone may be watching it
        alone = Run(out.strip().splitlines()[-1])  # the last line printed is the run directory
        shared = Run(run_dir)
        assert shared.summary["versions"]["torchvision"] == metadata.version("torchvision")  # not imported to ask
        assert without_seconds(shared.history) == without_seconds(alone.history)
        assert shared.steps() == alone.steps()
        for which in ("init", "best", "last"):
            same_payload(shared.checkpoint(which), alone.checkpoint(which), f"{run_dir.name}:{which}")
    assert len(builds) == 3  # alone, every run reads its data


def test_a_kept_bundle_that_was_written_into_is_built_again(tmp_path, mnist_small, monkeypatch):
    cfg = load_config(write_config(tmp_path / "c.yaml", {"format": "idx", "path": str(mnist_small), "limit_train": 100}))
    builds = counting(monkeypatch, build, "_build_data")
    first = build.build_data(cfg.data, 0)
    assert build.build_data(cfg.data, 0) is not first and len(builds) == 2  # outside memo.shared(): every time
    builds.clear()
    with memo.shared():
        kept = build.build_data(cfg.data, 0)
        assert build.build_data(cfg.data, 0) is kept and len(builds) == 1
        assert build.build_data(cfg.data, 1) is not kept and len(builds) == 2  # another seed, another bundle
        kept.train.x[0, 0, 0, 0] += 1  # no run may do this; if one did, the next one must not see it
        again = build.build_data(cfg.data, 0)
        assert again is not kept and len(builds) == 3
        assert torch.equal(again.train.x, first.train.x)


def test_a_read_handed_over_is_taken_once_by_the_same_data(tmp_path, mnist_small, monkeypatch):
    cfg = load_config(write_config(tmp_path / "c.yaml", {"format": "idx", "path": str(mnist_small), "limit_train": 100}))
    reads = counting(monkeypatch, build.FORMATS, "build")
    raw = build.read_raw(cfg.data, 0)
    memo.hand_over(cfg.data, 0, raw)
    taken = build.build_data(cfg.data, 0)
    assert len(reads) == 1  # the bundle was built from the read handed over
    anew = build.build_data(cfg.data, 0)
    assert len(reads) == 2  # once only
    for a, b in ((taken.train, anew.train), (taken.val, anew.val), (taken.test, anew.test)):
        assert (a is None) == (b is None) and (a is None or torch.equal(a.x, b.x) and torch.equal(a.y, b.y))
    memo.hand_over(cfg.data, 0, raw)
    build.read_raw(cfg.data, 1)  # another seed reads the files, and the kept read is dropped
    assert build.read_raw(cfg.data, 0) is not raw and len(reads) == 4


def test_a_dataset_rewritten_between_runs_is_read_again(tmp_path, mnist_small, monkeypatch):
    import shutil

    data = tmp_path / "mnist"
    shutil.copytree(mnist_small, data)
    cfg = load_config(write_config(tmp_path / "c.yaml", {"format": "idx", "path": str(data), "limit_train": 100}))
    builds = counting(monkeypatch, build, "_build_data")
    with memo.shared():
        kept = build.build_data(cfg.data, 0)
        labels = next(p for p in data.iterdir() if "train-labels" in p.name)
        labels.write_bytes(labels.read_bytes())  # the same bytes, a new modification time
        again = build.build_data(cfg.data, 0)
    assert again is not kept and len(builds) == 2


def test_curves_drawn_at_end_draw_the_last_figure_once_even_on_error(tmp_path, monkeypatch):
    drawn = counting(monkeypatch, curves, "curves_figure")
    path = tmp_path / "curves.png"
    history = [{"epoch": 1, "train_loss": 1.0, "train_acc": 0.5}]
    with pytest.raises(RuntimeError), curves.drawn_at_end():
        curves.plot_curves(history, [2.0, 1.0], 2, path)
        curves.plot_curves([*history, {"epoch": 2, "train_loss": 0.5, "train_acc": 0.7}], [2.0, 1.0, 0.6, 0.4], 2, path)
        assert not path.exists() and drawn == []
        raise RuntimeError("the run failed")
    assert path.read_bytes().startswith(b"\x89PNG") and len(drawn) == 1
