"""`cnnlab lr-find`: the learning-rate range test on real MNIST (1,200 images), both engines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import write_config

from cnnlab.cli import main
from cnnlab.errors import UserError
from cnnlab.resolve import load_config
from cnnlab.training.lr_find import lr_text, run_lr_find, suggest


def config(tmp_path: Path, mnist_small: Path, **sections) -> Path:
    data = {"format": "idx", "path": str(mnist_small), "val_fraction": 0.0}
    return write_config(tmp_path / "cfg" / "c.yaml", data, **sections)


def sweep(cfg_path: Path, out: Path | None, **kw):
    lines: list[str] = []
    result = run_lr_find(load_config(cfg_path), out_dir=out, say=lines.append, **kw)
    return result, lines


# ----------------------------------------------------------------------------- no training


def test_lr_text_is_three_digits_and_reads_back_as_a_number():
    for lr, text in [(0.012345, "0.0123"), (1e-5, "1.0e-05"), (2.5e-7, "2.5e-07"), (3.0, "3"), (0.1, "0.1")]:
        assert lr_text(lr) == text
        assert isinstance(yaml.safe_load(text), (int, float))


def test_suggest_is_the_steepest_descent_before_the_minimum():
    lrs = np.logspace(-6, 1, 71)
    x = np.log10(lrs)
    loss = 2.3 - 1.5 / (1 + np.exp(-(x + 3) * 3))  # falls fastest at lr 1e-3
    loss[x > -1] += 40 * (x[x > -1] + 1) ** 2  # and blows up above 0.1, falling steeper still
    lr, note = suggest(lrs, loss)
    assert note == ""
    assert 0.7e-3 <= lr <= 1.4e-3
    rising = np.linspace(1, 3, 30)
    lr, note = suggest(np.logspace(-3, 0, 30), rising)  # no descent: the lowest loss's lr / 10
    assert lr == pytest.approx(1e-4) and note
    with pytest.raises(UserError, match="lower --start"):
        suggest(np.array([5.0]), np.array([np.nan]))  # a NaN at the first step


# ----------------------------------------------------------------------------- sweeps


@pytest.mark.slow
def test_the_same_seed_gives_the_same_curve_and_suggestion(tmp_path, mnist_small):
    cfg = config(tmp_path, mnist_small)
    a, _ = sweep(cfg, tmp_path / "a", steps=30)
    b, _ = sweep(cfg, tmp_path / "b", steps=30)
    assert a.suggestions == b.suggestions
    assert a.sweeps[0].losses == b.sweeps[0].losses
    assert (tmp_path / "a" / "lr-find-t.csv").read_text() == (tmp_path / "b" / "lr-find-t.csv").read_text()
    report = json.loads((tmp_path / "a" / "lr-find-t.json").read_text())
    assert report["suggestions"] == a.suggestions and report["config_lr"] == 0.05
    assert report["override"] == f"optim.lr={lr_text(a.suggestion)}"


@pytest.mark.slow
def test_the_sweep_stops_when_the_loss_blows_up_and_suggests_below_it(tmp_path, mnist_small):
    start, end, steps = 1e-6, 1e3, 60
    result, lines = sweep(config(tmp_path, mnist_small), tmp_path / "out", start=start, end=end, steps=steps)
    s = result.sweeps[0]
    assert s.steps < steps and ("blew up" in s.stop or "the loss is" in s.stop)
    assert start <= result.suggestion <= end
    assert result.suggestion < s.lrs[-1]  # below the lr where the loss blew up
    assert result.suggestion <= s.lowest_lr
    assert np.allclose(np.diff(np.log(s.lrs)), np.log(end / start) / (steps - 1))  # exponential
    assert lines[0].startswith("seed 0: optim.lr=") and f"of {steps} steps" in lines[0]
    assert lines[-1].startswith(f"suggestion: optim.lr={lr_text(result.suggestion)}")
    rows = (tmp_path / "out" / "lr-find-t.csv").read_text().splitlines()
    assert rows[0] == "seed,step,lr,loss,smoothed" and len(rows) == 1 + s.steps


@pytest.mark.slow
def test_several_seeds_print_each_suggestion_and_their_range(tmp_path, mnist_small):
    result, lines = sweep(config(tmp_path, mnist_small, seed=3), tmp_path / "out", steps=30, seeds=2)
    assert [s.seed for s in result.sweeps] == [3, 4]
    assert result.sweeps[0].losses != result.sweeps[1].losses  # another model and batch order
    assert lines[0].startswith("seed 3:") and lines[1].startswith("seed 4:")
    low, high = min(result.suggestions), max(result.suggestions)
    assert f"range {lr_text(low)}..{lr_text(high)}" in lines[2] and "median optim.lr=" in lines[2]
    assert low <= result.suggestion <= high
    assert result.figure.stat().st_size > 10_000


@pytest.mark.slow
def test_the_numpy_engine_sweeps_through_the_same_seam(tmp_path, mnist_small, monkeypatch):
    cfg = config(tmp_path, mnist_small, model={"name": "lenet"})
    cfg.write_text(cfg.read_text() + "engine: scratch\n")
    monkeypatch.chdir(tmp_path)  # without an output folder the figure goes into the current one
    result, _ = sweep(cfg, None, steps=25, end=1.0)
    assert 1e-7 <= result.suggestion <= 1.0
    assert result.figure == tmp_path / "lr-find-t.png" and result.figure.is_file()


# ----------------------------------------------------------------------------- the command


@pytest.mark.slow
def test_cli_end_to_end_leaves_no_run_directory(tmp_path, mnist_small, monkeypatch, capsys):
    cfg = config(tmp_path, mnist_small)
    monkeypatch.chdir(tmp_path)
    assert main(["lr-find", str(cfg), "--steps", "30", "--out", str(tmp_path / "lr")]) == 0
    shown = capsys.readouterr().out.strip().splitlines()
    assert shown[-1] == str(tmp_path / "lr" / "lr-find-t.png")
    assert sorted(p.name for p in (tmp_path / "lr").iterdir()) == ["lr-find-t.csv", "lr-find-t.json", "lr-find-t.png"]
    assert not (tmp_path / "runs").exists() and not (cfg.parent / "runs").exists()
    # Without --out: only the figure, in the current folder.
    assert main(["lr-find", str(cfg), "--steps", "10", "optim.lr=0.01"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg", "lr", "lr-find-t.png"]


def test_a_downward_sweep_is_one_line_and_exit_2(tmp_path, mnist_small, capsys):
    assert main(["lr-find", str(config(tmp_path, mnist_small)), "--start", "1", "--end", "0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--end must be larger than --start" in err[0]


def test_the_output_folder_is_checked_before_the_data_is_read(tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml", {"format": "idx", "path": str(tmp_path / "missing")})
    (tmp_path / "afile").write_text("")
    assert main(["lr-find", str(cfg), "--out", str(tmp_path / "afile")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cnnlab: error: --out:")
    assert main(["lr-find", str(cfg), "--out", str(tmp_path / "o")]) == 2  # now the data's turn
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.path" in err[0]
