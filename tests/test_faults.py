"""Fault drills on real runs in real processes: SIGTERM and SIGINT mid-epoch, kill -9 with
in-epoch checkpoints, a finite blow-up, a dead run's lock, and bad output locations."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FASHION, ROOT, write_config

from cnnlab.cli import main

pytestmark = pytest.mark.slow


def config(tmp_path: Path, name: str, **train) -> Path:
    """Fashion-MNIST, 3,000 training and 1,000 test images, augmented, a small CNN: 43 steps an epoch,
    about a second with its evaluation (a process spends longer starting than training)."""
    data = {"format": "idx", "path": str(FASHION), "limit_train": 3000, "limit_test": 1000, "val_fraction": 0.1}
    return write_config(tmp_path / name / "c.yaml", data, augment=["hflip", {"random_crop": 2}],
                        model={"channels": [8, 16], "dropout": 0.2}, schedule={"name": "onecycle"},
                        train={"epochs": 2, "batch_size": 64, "threads": 2, **train})


def metrics(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(x).items() if k != "seconds"}
            for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def start(cfg: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "cnnlab", "train", str(cfg), "-q"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path_glob: Path, pattern: str, proc: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        found = list(path_glob.glob(pattern))
        if found:
            return found[0]
        time.sleep(0.01)
    raise AssertionError(f"{pattern} never appeared under {path_glob}")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("whole")
    # In a fresh process, as the interrupted runs: what earlier tests did to this process's
    # torch (threads, flags) must not make the reference differ.
    r = subprocess.run([sys.executable, "-m", "cnnlab", "train", str(config(tmp, "a")), "-q"], capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    return next((tmp / "a" / "runs").iterdir())


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143),  # SIGINT takes the same path: `make test-all`
                                       pytest.param(signal.SIGINT, 130, marks=pytest.mark.heavy)])
def test_a_signal_mid_epoch_saves_the_step_and_resume_replays_the_rest(sig, code, uninterrupted, tmp_path):
    cfg = config(tmp_path, "b", checkpoint_every=10)
    proc = start(cfg)
    wait_for(tmp_path / "b" / "runs", "*/last.pt", proc)  # 10 steps into epoch 1
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    run_dir = next((tmp_path / "b" / "runs").iterdir())
    assert proc.returncode == code, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"stopped by {signal.Signals(sig).name} in epoch" in err and f"cnnlab resume {run_dir}" in err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "after step" in summary["reason"]
    assert not (run_dir / "lock.json").exists()
    r = subprocess.run([sys.executable, "-m", "cnnlab", "resume", str(run_dir), "-q"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert metrics(run_dir) == metrics(uninterrupted)  # the same batches, weights and lr from the next step on


def test_kill_9_loses_at_most_the_checkpoint_interval(uninterrupted, tmp_path):
    cfg = config(tmp_path, "c", checkpoint_every=5)
    proc = start(cfg)
    run_dir = wait_for(tmp_path / "c" / "runs", "*", proc)
    last = run_dir / "last.pt"
    while not last.exists() and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.1)  # between two checkpoints, well before the end (86 steps and two evaluations)
    proc.kill()
    proc.wait()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "running"  # what a killed run leaves: it says it was running ...
    assert (run_dir / "lock.json").exists()  # ... and whose it was; the pid is gone
    import torch

    partial = torch.load(last, weights_only=True).get("partial")
    done = summary["epochs"]
    assert partial is not None or done >= 1
    r = subprocess.run([sys.executable, "-m", "cnnlab", "resume", str(run_dir), "-q"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert metrics(run_dir) == metrics(uninterrupted)


def test_a_live_runs_lock_refuses_a_second_trainer(tmp_path, capsys):
    cfg = config(tmp_path, "d", checkpoint_every=5)
    proc = start(cfg)
    try:
        wait_for(tmp_path / "d" / "runs", "*/last.pt", proc)
        # Stopped (SIGSTOP), the first trainer is alive and holds its lock for as long as the second one
        # takes, however busy the machine, and leaves it the CPU meanwhile.
        proc.send_signal(signal.SIGSTOP)
        run_dir = next((tmp_path / "d" / "runs").iterdir())
        # The second trainer: this process (torch already imported here, so it gets to the lock in a second).
        assert main(["resume", str(run_dir)]) == 2
        err = capsys.readouterr().err
        assert f"is being trained by pid {proc.pid}" in err and len(err.splitlines()) == 1, err
    finally:
        proc.kill()
        proc.wait()


def test_a_finite_blow_up_stops_as_diverged(tmp_path, capsys):
    cfg = config(tmp_path, "e")
    code = main(["train", str(cfg), "-q", "optim.lr=1000000", "schedule.name=none"])
    err = capsys.readouterr().err
    assert code == 3 and "diverged" in err and "train.diverge_factor" in err and len(err.strip().splitlines()) == 1
    run_dir = next((tmp_path / "e" / "runs").iterdir())
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "diverged"


def test_output_locations_are_checked_before_any_work(tmp_path, capsys):
    cfg = config(tmp_path, "f")
    (tmp_path / "a-file").write_text("x")
    assert main(["train", str(cfg), f"train.out_dir={tmp_path / 'a-file'}"]) == 2
    assert "train.out_dir:" in capsys.readouterr().err
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        assert main(["train", str(cfg), f"train.out_dir={ro}"]) == 2
        assert "cannot write" in capsys.readouterr().err


def in_epoch_2(last: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until last.pt is a checkpoint taken inside epoch 2 (written atomically: it reads whole)."""
    import torch

    deadline, seen = time.time() + timeout, None
    while time.time() < deadline and proc.poll() is None:
        try:
            stamp = last.stat().st_mtime_ns
            if stamp != seen:
                seen = stamp
                if (torch.load(last, weights_only=True).get("partial") or {}).get("epoch") == 2:
                    return
        except (OSError, RuntimeError, EOFError):
            pass  # not written yet
        time.sleep(0.005)
    raise AssertionError(f"no in-epoch checkpoint of epoch 2 in {last}")


def test_a_study_run_killed_mid_epoch_is_reported_dead_and_resumed(tmp_path, capsys):
    """kill -9 a study in its run's second epoch: --status names the dead run, the next
    `cnnlab study` resumes it from its in-epoch checkpoint (epoch 1 is not trained again)."""
    import yaml

    cfg = config(tmp_path, "s", checkpoint_every=5)
    study = tmp_path / "s" / "one.yaml"
    study.write_text(yaml.safe_dump({"base": str(cfg), "out_dir": str(tmp_path / "studies"), "mode": "grid",
                                     "axes": {"model.dropout": [0.2]}}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "cnnlab", "study", str(study)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        history = wait_for(tmp_path / "studies", "one/runs/*/metrics.jsonl", proc, timeout=300)
        while proc.poll() is None and not history.read_text().strip():
            time.sleep(0.01)
        first_epoch = history.read_text()
        in_epoch_2(history.parent / "last.pt", proc)  # killed right after an in-epoch checkpoint of epoch 2
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    run_dir = history.parent
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "running"
    # --status and the rerun in this process (the killed study's processes are gone either way).
    assert main(["study", str(study), "--status"]) == 0
    out = capsys.readouterr().out
    assert f"died runs/{run_dir.name}:" in out and "resumes it from its last checkpoint" in out
    assert main(["study", str(study)]) == 0, capsys.readouterr().err
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    lines = history.read_text().splitlines()
    assert len(lines) == 2 and lines[0] == first_epoch.strip()  # the same epoch-1 record, seconds included
