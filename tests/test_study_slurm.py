"""`cnnlab study --slurm` against a real single-node Slurm cluster on loopback (tests/slurm_cluster.py:
Debian's munged, slurmctld and slurmd, started here as the PostgreSQL test starts its server).

A 4-run study goes to Slurm as a 2-task job array; `--cancel` stops it mid-run, a second submission
with --wait is requeued by `scontrol requeue` mid-run, and the study ends with the same table and the
same numbers as the same study run locally; the interrupted runs were resumed, not started again."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import slurm_cluster
import yaml
from conftest import ROOT, write_config

from cnnlab.cli import main
from cnnlab.studies.slurm_checks import time_minutes

NAME = "onslurm"
METRICS = ("status", "epochs", "best_epoch", "val_acc", "test_acc", "final_train_loss", "final_val_loss",
           "final_val_acc", "best_val_loss", "threads")


@pytest.fixture(scope="module")
def slurm_env():
    """The cluster's environment (SLURM_CONF) for the commands of this module."""
    gone = slurm_cluster.missing()
    if gone and os.geteuid() != 0:
        pytest.skip(f"Slurm is not installed ({', '.join(gone)} missing) and only root can install it: "
                    f"{slurm_cluster.INSTALL}")
    if gone:
        pytest.fail(f"Slurm is not installed ({', '.join(gone)} missing): {slurm_cluster.INSTALL}")
    with slurm_cluster.cluster(cpus=2) as env:
        yield env


def write_study(folder: Path, mnist: Path) -> Path:
    """Two dropouts x two seeds of a small CNN: 4 epochs of 45 steps on 900 MNIST images, a few seconds a run."""
    folder.mkdir(parents=True)
    write_config(folder / "base.yaml", {"format": "idx", "path": str(mnist), "val_fraction": 0.25},
                 model={"name": "cnn", "channels": [8], "norm": "batch"}, optim={"name": "sgd", "lr": 0.02, "momentum": 0.9},
                 train={"epochs": 4, "batch_size": 20})
    path = folder / f"{NAME}.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "mode": "grid", "seeds": [0, 1], "out_dir": str(folder / "studies"),
                                    "axes": {"model.dropout": [0.0, 0.5]}}, sort_keys=False))
    return path


def one_cpu_each() -> None:
    """The local reference's two workers get one thread each, as each Slurm task (one CPU) does."""
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])


def rows(folder: Path) -> dict[str, dict[str, str]]:
    return {r["key"]: r for r in csv.DictReader((folder / "results.csv").open())}


def mid_run(folder: Path, skip: set[str], deadline: float) -> Path:
    """A run that has finished its first epoch and trains on (not one of `skip`)."""
    while time.monotonic() < deadline:
        for run in sorted((folder / "runs").glob("*")) if (folder / "runs").is_dir() else []:
            try:
                status = json.loads((run / "summary.json").read_text())["status"]
                epochs = len((run / "metrics.jsonl").read_text().splitlines())
            except (OSError, ValueError, KeyError):
                continue
            if run.name not in skip and status == "running" and epochs >= 1:
                return run
        time.sleep(0.05)
    raise AssertionError(f"no run got past its first epoch in time; logs:\n{logs(folder)}")


def logs(folder: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted((folder / "slurm" / "logs").glob("*.out")))


def squeue(env: dict[str, str], job: str) -> list[str]:
    out = subprocess.run(["squeue", "--noheader", "--array", f"--jobs={job}", "--format=%i %T"], env=env,
                         capture_output=True, text=True)
    return out.stdout.split("\n") if out.returncode == 0 and out.stdout.strip() else []


def stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def resumable(folder: Path, skip: set[str]) -> dict[str, tuple[int, int]]:
    """Runs with a checkpoint (a stop resumes them) and the identity of their init.pt: written once
    when a run starts, so the same file after the study ends means the run was resumed."""
    return {r.name: stamp(r / "init.pt") for r in (folder / "runs").iterdir()
            if r.name not in skip and (r / "last.pt").is_file()}


@pytest.mark.slow
def test_slurm_study_cancelled_requeued_and_equal_to_a_local_run(tmp_path, mnist_small, slurm_env, monkeypatch, capsys):
    env = {**os.environ, **slurm_env, "PYTHONPATH": str(ROOT)}
    for k, v in slurm_env.items():
        monkeypatch.setenv(k, v)
    local = write_study(tmp_path / "local", mnist_small)
    remote = write_study(tmp_path / "cluster", mnist_small)
    folder = remote.parent / "studies" / NAME

    t0 = time.monotonic()
    # The reference: the same study on this machine, two worker processes. It runs while the cluster's
    # part waits on Slurm (scheduling, the requeue's hold), and is compared at the end.
    log = tmp_path / "local.log"
    with log.open("w") as out:
        reference = subprocess.Popen([sys.executable, "-m", "cnnlab", "study", str(local), "--workers", "2"], env=env,
                                     stdout=out, stderr=subprocess.STDOUT, preexec_fn=one_cpu_each)
    try:
        cluster_part(remote, folder, env, slurm_env, capsys, t0)
        reference.wait(timeout=300)
    finally:
        if reference.poll() is None:
            reference.kill()
            reference.wait()
    assert reference.returncode == 0, log.read_text()
    print(f"and the local study: {time.monotonic() - t0:.0f} s")

    # The same table and the same numbers as the local study; every interrupted run was resumed.
    assert (folder / "table.md").read_text() == (local.parent / "studies" / NAME / "table.md").read_text()
    ours, theirs = rows(folder), rows(local.parent / "studies" / NAME)
    assert sorted(ours) == sorted(theirs) and len(ours) == 4
    for key in ours:
        assert {m: ours[key][m] for m in METRICS} == {m: theirs[key][m] for m in METRICS}, key
    assert {r["status"] for r in ours.values()} == {"completed"} and {r["threads"] for r in ours.values()} == {"1"}


def cluster_part(remote: Path, folder: Path, env: dict[str, str], slurm_env: dict[str, str], capsys,
                 t0: float) -> None:
    """The study on the cluster: submitted and cancelled mid-run, submitted again and requeued mid-run."""
    # Submit a 2-task array; cancel it while its runs train.
    assert main(["study", str(remote), "--slurm", "--workers", "2", "--cpus-per-worker", "1"]) == 0
    out = capsys.readouterr().out
    job = out.split("submitted job array ")[1].split()[0]
    script = (folder / "slurm" / "worker.sbatch").read_text()
    assert "#SBATCH --array=0-1" in script and "#SBATCH --signal=B:USR1@60" in script and "--requeue" in script
    deadline = time.monotonic() + 600  # a few tens of seconds on a quiet 2-core machine
    while [line.split()[-1] for line in squeue(slurm_env, job) if line] != ["RUNNING"] * 2:
        assert time.monotonic() < deadline, squeue(slurm_env, job)
        time.sleep(0.1)
    assert main(["study", str(remote), "--status"]) == 0
    status = capsys.readouterr().out
    assert f"{job}_0 " in status and f"{job}_1 " in status and "RUNNING" in status, status
    # Cancelled as soon as a run is past its first epoch (it has 3 more, about a second, to be caught in).
    mid_run(folder, set(), deadline)
    assert main(["study", str(remote), "--cancel"]) == 0
    assert f"cancelled job {job};" in capsys.readouterr().out
    while squeue(slurm_env, job) and time.monotonic() < deadline:
        time.sleep(0.1)
    runs = list((folder / "runs").iterdir())
    # A task cancelled while its run was being set up leaves a folder without summary.json and without a
    # checkpoint: nothing was trained, and the next attempt starts that run afresh.
    summaries = {r.name: json.loads((r / "summary.json").read_text()) for r in runs if (r / "summary.json").is_file()}
    assert all((r / "summary.json").is_file() or not (r / "last.pt").exists() for r in runs)
    stopped = [name for name, s in summaries.items() if s["status"] == "interrupted"]
    assert stopped and all("SIGTERM" in summaries[name]["reason"] for name in stopped), summaries
    cancelled = resumable(folder, set())
    assert set(stopped) <= set(cancelled)
    assert main(["study", str(remote), "--status"]) == 0
    status = capsys.readouterr().out
    assert "2 tasks: 0 queued, 0 running, 2 finished" in status and f"{job}_0 " in status and "STOPPED" in status
    assert main(["study", str(remote), "--cancel"]) == 0
    assert "no job of this study is queued or running" in capsys.readouterr().out

    print(f"submitted, cancelled mid-run: {time.monotonic() - t0:.0f} s")
    # Submit again and wait; `scontrol requeue` the array while a fresh run trains. The cancelled runs
    # and the requeued ones resume from their last.pt.
    proc = subprocess.Popen([sys.executable, "-m", "cnnlab", "study", str(remote), "--slurm", "--workers", "2",
                             "--cpus-per-worker", "1", "--wait"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    second = mid_run(folder, set(cancelled), deadline)
    job2 = next(line for line in lines if "submitted job array" in line).split("submitted job array ")[1].split()[0]
    subprocess.run(["scontrol", "requeue", job2], env=slurm_env, check=True, capture_output=True)
    requeued = resumable(folder, set(cancelled))
    assert proc.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, "".join(lines) + logs(folder)
    print(f"submitted, requeued mid-run, finished: {time.monotonic() - t0:.0f} s")
    text = "".join(lines)
    assert "4 done, 0 running, 0 failed, 0 left (of 4)" in text, text

    # Every interrupted run was resumed.
    ours = rows(folder)
    assert len(ours) == 4
    for name, before in {**cancelled, **requeued}.items():
        assert stamp(folder / "runs" / name / "init.pt") == before, f"{name} started again instead of resuming"
    assert second.name in requeued
    assert f"task {job2}_0, attempt 2" in logs(folder) and f"task {job2}_1, attempt 2" in logs(folder)
    assert (folder / "table.png").is_file()  # task 0 drew the final figures; --wait drew them again

    from optuna.storages.journal import JournalFileBackend

    journal = optuna.storages.JournalStorage(JournalFileBackend(str(folder / "optuna-journal.log")))
    trials = optuna.load_study(study_name=NAME, storage=journal).get_trials(deepcopy=False)
    won = [t for t in trials if "result" in t.user_attrs and "duplicate" not in t.user_attrs]
    assert sorted(t.user_attrs["key"] for t in won) == sorted(ours)
    assert len([t for t in trials if "lost" in t.user_attrs]) >= len(cancelled) + 1  # at least 1 requeued mid-run
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]

    assert main(["study", str(remote), "--status"]) == 0
    status = capsys.readouterr().out
    assert f"{job2}_0 " in status and "4 tasks: 0 queued, 0 running, 4 finished" in status
    assert status.count("FINISHED") == 2 and status.count("STOPPED") == 2


@pytest.mark.parametrize("args, says", [
    (["--partition", "far"], "cannot read; set out_dir:"),  # the folder is on this machine's disk, far1 is not
    (["--partition", "nowhere"], "--partition nowhere: no such partition"),
    (["--time", "3"], "--time 3: a worker is asked to stop 60 s before its limit"),
    (["--time", "1h"], "--time '1h': not a Slurm time"),
    (["--gpus-per-worker", "2"], "--gpus-per-worker 2: a study worker trains one run at a time"),
    (["--storage", "postgresql://u@localhost/db", "--partition", "far"], "--storage: localhost is each node's own"),
])
def test_bad_slurm_input_is_one_line_and_submits_nothing(tmp_path, mnist_small, slurm_env, monkeypatch, capsys, args, says):
    for k, v in slurm_env.items():
        monkeypatch.setenv(k, v)
    study = write_study(tmp_path / "s", mnist_small)
    assert main(["study", str(study), "--slurm", *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and says in err, err
    assert not (tmp_path / "s" / "studies").exists()


def test_slurm_without_sbatch_is_one_line(tmp_path, mnist_small, monkeypatch, capsys):
    study = write_study(tmp_path / "s", mnist_small)
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))
    assert main(["study", str(study), "--slurm"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: error: --slurm: sbatch is not on PATH") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s" / "studies").exists()
    assert main(["study", str(study), "--time", "1:00:00"]) == 2
    assert "--time goes with --slurm" in capsys.readouterr().err


def test_slurm_time_formats():
    assert [time_minutes(t) for t in ("90", "5:30", "1:30:00", "2-0", "1-2:30", "0-0:4:30")] == [90, 5.5, 90, 2880,
                                                                                                 1590, 4.5]
    assert time_minutes("UNLIMITED") is None
