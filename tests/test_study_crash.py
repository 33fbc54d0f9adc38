"""Crash safety: kill -9 the study at random moments ten times, rerun, and compare the final
results with an uninterrupted study: the same runs, each exactly once, with the same status."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import ROOT, write_config

from cnnlab.cli import main
from cnnlab.studies.launch import default_threads

pytestmark = pytest.mark.slow

SPEC = {
    "mode": "ablation",
    "axes": {
        "model.dropout": [0.5],
        "optimizer": {"adam": {"optim.name": "adam", "optim.lr": 0.01}},
        "broken": {"too_deep": {"model.channels": [4, 4, 4, 4, 4, 4]}},  # fails at once, every time
    },
}


def make_study(folder: Path, mnist: Path, seeds: tuple[int, ...] = (0, 1, 2)) -> Path:
    folder.mkdir(parents=True)
    write_config(folder / "base.yaml", {"format": "idx", "path": str(mnist), "limit_train": 240, "val_fraction": 0.25},
                 model={"name": "cnn", "channels": [4], "norm": "batch"}, train={"epochs": 1, "batch_size": 60})
    path = folder / "crash.yaml"
    spec = {"base": "base.yaml", "out_dir": str(folder / "studies"), **SPEC, "seeds": list(seeds)}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def runs(path: Path) -> list[tuple[str, str, str]]:
    rows = list(csv.DictReader((path.parent / "studies" / "crash" / "results.csv").open()))
    return sorted((r["key"], r["variant"], r["status"]) for r in rows)


def group_alive(pgid: int) -> list[int]:
    """Processes of a process group that still run (zombies are dead already)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[2]) == pgid and stat[0] != "Z":
            alive.append(int(entry.name))
    return alive


def start(path: Path, workers: int) -> tuple[subprocess.Popen, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "cnnlab", "study", str(path), "--workers", str(workers)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    return proc, lines


@pytest.mark.heavy  # `make test-all`: test_faults and the Ctrl-C test below cover a killed study in CI
def test_kill9_ten_times_then_finish_equals_an_uninterrupted_study(tmp_path, mnist_small, capsys):
    reference = make_study(tmp_path / "reference", mnist_small)
    assert main(["study", str(reference)]) == 0
    capsys.readouterr()
    expected = runs(reference)
    assert len(expected) == 12 and sum(s == "failed" for _, _, s in expected) == 3

    path = make_study(tmp_path / "crashed", mnist_small)
    rng = random.Random(20261122)
    killed_mid_run = 0
    for i in range(10):
        proc, lines = start(path, workers=2 if i % 3 == 1 else 1)  # three kills hit worker processes
        if i % 2 == 0:
            time.sleep(rng.uniform(0.5, 5.0))  # any moment: start-up, training, recording, writing
        else:
            # Right after some run finished: while its result is being recorded and the next begins.
            seen = sum(" seed " in line for line in lines)
            deadline = time.monotonic() + 30
            while sum(" seed " in line for line in lines) == seen and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.5))
        if proc.poll() is None:
            killed_mid_run += 1
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 15
        while group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not group_alive(proc.pid), "worker processes outlived the killed study"
    assert killed_mid_run >= 5  # most kills hit a study that was still working

    assert main(["study", str(path)]) == 0, capsys.readouterr().err
    assert runs(path) == expected

    # Every run was recorded exactly once, and nothing is left running or waiting.
    from optuna.storages.journal import JournalFileBackend

    journal = path.parent / "studies" / "crash" / "optuna-journal.log"
    trials = optuna.load_study(study_name="crash", storage=optuna.storages.JournalStorage(
        JournalFileBackend(str(journal)))).get_trials(deepcopy=False)
    recorded = [t.user_attrs["key"] for t in trials if "result" in t.user_attrs and "duplicate" not in t.user_attrs]
    assert sorted(recorded) == sorted(k for k, _, _ in expected)
    assert not [t for t in trials if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)]
    lost = [t for t in trials if "lost" in t.user_attrs]
    print(f"{len(trials)} trials, {len(lost)} taken back from killed workers, {killed_mid_run} kills mid-study")


def test_ctrl_c_hands_runs_back_and_the_rerun_finishes(tmp_path, mnist_small):
    from cnnlab.cli import STUDY_INTERRUPTED
    from cnnlab.studies.plan import build_plan
    from cnnlab.studies.spec import load_study

    path = make_study(tmp_path / "ctrl-c", mnist_small, seeds=(0,))
    proc, lines = start(path, workers=2)
    deadline = time.monotonic() + 120
    while not any(" seed " in line for line in lines) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "".join(lines)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C: the whole foreground group
    assert proc.wait(timeout=60) == 130
    time.sleep(0.2)  # the reader thread drains the pipe
    text = "".join(lines)
    assert text.count(STUDY_INTERRUPTED) == 1 and "Traceback" not in text
    assert not group_alive(proc.pid)

    journal = path.parent / "studies" / "crash" / "optuna-journal.log"
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    trials = optuna.load_study(study_name="crash", storage=storage).get_trials(deepcopy=False)
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]  # all handed back
    assert all(t.user_attrs["lost"] == "interrupted by the user (Ctrl-C)" for t in trials if "lost" in t.user_attrs)

    # The rerun finishes with two worker processes too, each with half the cores.
    assert main(["study", str(path), "--workers", "2"]) == 0
    keys = sorted(u.key for u in build_plan(load_study(path)).units)
    assert [k for k, _, _ in runs(path)] == keys
    rows = list(csv.DictReader((path.parent / "studies" / "crash" / "results.csv").open()))
    assert {r["threads"] for r in rows} == {str(default_threads(2))}
    trials = optuna.load_study(study_name="crash", storage=storage).get_trials(deepcopy=False)
    assert len({t.user_attrs["lease"]["pid"] for t in trials if "result" in t.user_attrs}) <= 4  # 2 + 2 processes
