"""Study figures from results rows of a real 4-axis grid plan (no training needed)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import yaml
from conftest import write_config

from cnnlab.studies.figures import draw_all, winning_cells
from cnnlab.studies.plan import build_plan
from cnnlab.studies.results import axis_columns
from cnnlab.studies.spec import load_study
from cnnlab.studies.table import VariantInfo, build_table

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def grid(tmp_path, mnist_small):
    write_config(tmp_path / "base.yaml", {"format": "idx", "path": str(mnist_small)}, model={"name": "cnn", "channels": [4]})
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "mode": "grid", "seeds": [0, 1], "axes": {
        "optim.lr": [0.001, 0.01, 0.1], "model.dropout": [0.0, 0.5], "train.batch_size": [32, 64],
        "train.epochs": [1, 2]}}, sort_keys=False))
    plan = build_plan(load_study(path))
    rng = np.random.default_rng(0)
    rows = []
    for v in plan.variants:
        lr, drop, bs, ep = (v.overrides[k] for k in ("optim.lr", "model.dropout", "train.batch_size", "train.epochs"))
        for seed in plan.seeds:
            acc = 0.5 + 2 * lr + 0.05 * ep - 0.1 * drop + 0.001 * seed
            hist = [{"epoch": e, "val_acc": acc - 0.05 * (ep - e), "val_loss": 1 - acc} for e in range(1, ep + 1)]
            rows.append({"variant": v.label, **axis_columns(plan, v), "seed": seed, "fold": None,
                         "status": "completed", "val_acc": acc, "test_acc": acc - rng.uniform(0, 0.01), "history": hist})
    return plan, rows


def test_winning_cells_take_the_best_over_the_remaining_axes(grid):
    plan, rows = grid
    cells = winning_cells(plan, rows, 3)
    assert len(cells) == 3 * 2 * 2
    # The best over epochs is always 2 epochs here; the mean is over the two seeds.
    for lr, drop, bs in itertools.product(("0.001", "0.01", "0.1"), ("0", "0.5"), ("32", "64")):
        want = 0.5 + 2 * float(lr) + 0.05 * 2 - 0.1 * float(drop) + 0.0005
        assert cells[(lr, drop, bs)] == pytest.approx(want)


def test_grid_figures_are_drawn(grid, tmp_path):
    plan, rows = grid
    infos = [VariantInfo(v.label, dict(v.levels), v.is_base) for v in plan.variants]
    table = build_table(rows, infos, ["val_acc", "test_acc"], [a.name for a in plan.study.axes])
    paths = draw_all(plan, rows, table, tmp_path)
    names = sorted(p.name for p in paths)
    assert names == ["bar-model.dropout.png", "bar-optim.lr.png", "bar-train.batch_size.png", "bar-train.epochs.png",
                     "curves.png", "scatter3d.png", "table.png"]  # no heatmap: it is for two-axis grids
    for p in paths:
        assert p.read_bytes()[:8] == PNG and p.stat().st_size > 10_000


def test_figures_drawn_in_two_processes_are_the_same_files(grid, tmp_path, monkeypatch):
    import os

    from cnnlab.studies import figures, forked

    plan, rows = grid
    infos = [VariantInfo(v.label, dict(v.levels), v.is_base) for v in plan.variants]
    table = build_table(rows, infos, ["val_acc", "test_acc"], [a.name for a in plan.study.axes])
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    alone = draw_all(plan, rows, table, tmp_path / "one")
    pids: list[int] = []
    real = figures.table_figure
    monkeypatch.setattr(figures, "table_figure", lambda *a: (pids.append(os.getpid()), real(*a))[1])
    both = draw_all(plan, rows, table, tmp_path / "two", processes=2)
    assert pids == [] and [p.name for p in both] == [p.name for p in alone]  # table.png: drawn in the forked process
    for a, b in zip(alone, both):
        assert a.read_bytes() == b.read_bytes(), a.name

    # When the forked process fails, this one draws table.png itself.
    monkeypatch.setattr(forked.Forked, "wait", lambda self, timeout=None: (self.process.join(), 1)[1])
    (tmp_path / "two" / "table.png").unlink()
    again = draw_all(plan, rows, table, tmp_path / "two", processes=2)
    assert pids == [os.getpid()] and (tmp_path / "two" / "table.png").read_bytes() == alone[0].read_bytes()
    assert [p.name for p in again] == [p.name for p in alone]
