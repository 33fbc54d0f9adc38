"""The run-directory contract (cnnlab/rundir.py), its checkpoint formats, and lazy modules."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, write_config

from cnnlab import checkpoints, rundir
from cnnlab.errors import UserError
from cnnlab.lazy import LazyModule, lazy
from cnnlab.reopen import run_config
from cnnlab.resolve import load_config
from cnnlab.rundir import Run


def test_a_run_written_and_read_back(tmp_path):
    cfg = load_config(write_config(tmp_path / "c.yaml", {"format": "idx", "path": str(tmp_path)}))
    run = rundir.create(tmp_path / "runs", "t")
    assert run.path.is_dir() and run.name.startswith("t-")
    assert rundir.create(tmp_path / "runs", "t").path != run.path  # same second: another folder
    run.write_config(cfg)
    assert run_config(run) == cfg and run.raw_config() == cfg.to_dict()
    run.write_data_info({"classes": ["a", "b"], "input_shape": [1, 28, 28]})
    assert run.data_info["classes"] == ["a", "b"]
    assert run.history == [] and not run.has_checkpoint("last") and not run.resumable()
    rows = [{"epoch": 1, "val_acc": 0.5}, {"epoch": 2, "val_acc": 0.75}]
    run.write_history(rows)
    assert run.history == rows
    run.write_summary({"status": "completed"})
    assert run.summary["status"] == "completed"
    assert sorted(p.name for p in run.path.iterdir()) == ["config.yaml", "data.json", "metrics.jsonl", "summary.json"]


@pytest.mark.parametrize("fmt", ["torch", "npz"])
def test_checkpoints_of_both_formats_round_trip(fmt, tmp_path):
    run = Run(tmp_path)
    weights = {"0.weight": np.arange(6, dtype=np.float32).reshape(2, 3)}
    if fmt == "torch":
        weights = {k: torch.from_numpy(v) for k, v in weights.items()}
    gen = torch.Generator().manual_seed(3)
    payload = {"engine": "x", "config": {"a": 1}, "data": {"classes": ["a"]}, "model": weights,
               "rng": {"torch": torch.get_rng_state(), "data": gen.get_state()},
               "schedule": {"steps": 4, "epochs": 1, "plateau": None}, "state": {"epoch": 1},
               "step_losses": [2.5, 1.25], **({"optim": {"lr": np.asarray(0.1)}} if fmt == "npz" else {})}
    run.write_checkpoint("last", payload, fmt)
    path = run.checkpoint_path("last")
    assert path is not None and path.name == f"last{rundir.CHECKPOINT_SUFFIX[fmt]}"
    back = run.checkpoint("last")
    assert back["config"] == {"a": 1} and back["state"] == {"epoch": 1} and back["schedule"]["steps"] == 4
    assert back["step_losses"] == [2.5, 1.25]
    assert np.array_equal(np.asarray(back["model"]["0.weight"]), np.arange(6).reshape(2, 3))
    restored = torch.Generator()
    restored.set_state(torch.as_tensor(np.asarray(back["rng"]["data"])))
    assert torch.equal(restored.get_state(), gen.get_state())
    if fmt == "npz":
        with np.load(path, allow_pickle=False) as z:  # arrays and text only
            assert set(z.files) == {"model/0.weight", "optim/lr", "rng/torch", "rng/data", "meta", "state"}


def test_unreadable_runs_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such run directory"):
        Run(tmp_path / "nope").config_raw()
    with pytest.raises(UserError, match="not a run directory"):
        run_config(Run(tmp_path))
    with pytest.raises(UserError, match="has not finished an epoch"):
        Run(tmp_path).checkpoint("best")
    (tmp_path / "summary.json").write_text("{")
    with pytest.raises(UserError, match="damaged JSON"):
        Run(tmp_path).summary  # noqa: B018
    assert Run(tmp_path).summary_or_none() is None
    (tmp_path / "best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="unreadable checkpoint"):
        Run(tmp_path).checkpoint("best")
    (tmp_path / "last.npz").write_bytes(b"PK")
    with pytest.raises(UserError, match="unreadable checkpoint"):
        checkpoints.load(tmp_path / "last.npz")
    np.savez(tmp_path / "other.npz", meta=np.asarray(json.dumps({"format": "something else"})))
    with pytest.raises(UserError, match="not a cnnlab NumPy-engine checkpoint"):
        checkpoints.load(tmp_path / "other.npz")


def test_lazy_modules_import_on_first_use():
    code = """
import sys
from cnnlab.lazy import lazy
colorsys = lazy("colorsys")
assert "colorsys" not in sys.modules
assert colorsys.rgb_to_hsv(1.0, 0.0, 0.0)[0] == 0.0
assert "colorsys" in sys.modules
print("ok")
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.stdout.strip() == "ok", p.stderr
    assert lazy("json") is json  # already imported: the module itself
    assert isinstance(lazy("a_module_not_imported_yet_xyz"), LazyModule)


def test_a_trained_run_keeps_every_steps_loss_and_draws_top5(cifar_run):
    """steps.csv holds the loss of every step (as last.pt does); curves.png gains a top-5
    panel when top-5 is logged (10 classes here)."""
    import csv

    import torch
    from PIL import Image

    rows = list(csv.DictReader((cifar_run / "steps.csv").open()))
    last = torch.load(cifar_run / "last.pt", weights_only=True)
    assert [float(r["train_loss"]) for r in rows] == pytest.approx(last["step_losses"], rel=1e-5)
    per_epoch = len(rows) // 3
    assert [int(r["step"]) for r in rows] == list(range(1, len(rows) + 1))
    assert [int(r["epoch"]) for r in rows] == [e for e in (1, 2, 3) for _ in range(per_epoch)]
    history = [json.loads(x) for x in (cifar_run / "metrics.jsonl").read_text().splitlines()]
    assert all(m["test_top5"] is not None for m in history)
    with Image.open(cifar_run / "curves.png") as im:
        assert im.width > 1500  # three panels (two are 1,210 px wide)
