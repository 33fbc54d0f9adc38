"""`cnnlab study --workers N` starts its worker processes before it imports torch, held at a gate
(studies/spawn.py): they start on the queue once the command has checked the study, and a command
that fails its checks first ends them without a word or a file. (Studies that pass their checks
run through the gate in every --workers 2 test: tests/test_study_crash.py, test_user_code_runs.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import write_config

from cnnlab.cli import main
from cnnlab.studies import spawn

pytestmark = pytest.mark.slow


def study(tmp_path: Path, mnist_small: Path, **data) -> Path:
    write_config(tmp_path / "base.yaml", {"format": "idx", "path": str(mnist_small), "limit_train": 120,
                                          "limit_test": 60, "val_fraction": 0.25, **data},
                 train={"epochs": 1, "batch_size": 40})
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "out_dir": str(tmp_path / "studies"), "mode": "grid",
                                    "metric": "val_acc", "axes": {"optim.lr": [0.05, 0.1]}, "seeds": [0]}))
    return path


def recording(monkeypatch) -> list[tuple[list[str], subprocess.Popen]]:
    """The worker processes spawn.start starts (still starting them)."""
    started: list[tuple[list[str], subprocess.Popen]] = []
    real = subprocess.Popen

    def popen(cmd, **kwargs):
        proc = real(cmd, **kwargs)
        if "--worker" in cmd:  # not git's, asked for the runs' environment
            started.append((cmd, proc))
        return proc

    monkeypatch.setattr(spawn.subprocess, "Popen", popen)
    return started


def test_a_failed_check_ends_the_gated_workers_quietly(tmp_path, mnist_small, monkeypatch, capfd):
    started = recording(monkeypatch)
    path = study(tmp_path, mnist_small, val_fraction=0.0)  # val_acc needs a validation split
    assert main(["study", str(path), "--workers", "2"]) == 2
    out, err = capfd.readouterr()  # the worker's output too: it writes to the same descriptors
    assert err.count("\n") == 1 and "metric: 'val_acc' needs a val split" in err, err
    assert len(started) == 1 and "--gated" in started[0][0]
    assert started[0][1].wait(timeout=60) == 0  # it was started, waited at its gate and left
    assert not (tmp_path / "studies").exists()  # no storage, no run folder


def test_the_gpus_a_worker_gets_are_known_without_torch_only_sometimes(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, GPU-ab")
    assert spawn.gpus_known_without_torch() == ["2", "GPU-ab"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(spawn.glob, "glob", lambda pattern: ["/dev/nvidia0"])
    assert spawn.gpus_known_without_torch() is None  # torch must count them: the workers start late
    monkeypatch.setattr(spawn.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(spawn.os.path, "exists", lambda p: False)
    assert spawn.gpus_known_without_torch() == []


def test_ctrl_c_after_a_study_runs_last_step_stops_the_study_not_the_run(tmp_path, mnist_small):
    """A Ctrl-C that lands after a run's last step (its last evaluation, its files) used to be lost:
    the run completed and the study went on to its next run."""
    import os
    import signal

    from cnnlab.callbacks import Callback
    from cnnlab.errors import Interrupted
    from cnnlab.resolve import load_config
    from cnnlab.rundir import Run
    from cnnlab.training import runner

    class CtrlCInLastEpoch(Callback):
        def on_epoch_end(self, epoch: int, metrics: dict) -> None:
            if epoch == 2:
                os.kill(os.getpid(), signal.SIGINT)  # after the last step: the run has nothing left to stop

    cfg = load_config(write_config(tmp_path / "c.yaml", {"format": "idx", "path": str(mnist_small), "limit_train": 120},
                                   train={"epochs": 2, "batch_size": 40}))
    with pytest.raises(Interrupted) as stopped:
        runner.train(cfg, run_dir=tmp_path / "in_a_study", quiet=True, callbacks=[CtrlCInLastEpoch()], shared=True)
    assert stopped.value.signum == signal.SIGINT and Run(tmp_path / "in_a_study").summary["status"] == "completed"
    alone = runner.train(cfg, run_dir=tmp_path / "alone", quiet=True, callbacks=[CtrlCInLastEpoch()])
    assert alone.summary["status"] == "completed"  # alone, the command just ends: the run is done
