"""Workers on "two machines" share one study through a real PostgreSQL server on loopback;
one is killed half-way, the other takes over its run, and a rerun completes the results.

Needs the PostgreSQL server binaries (Debian/Ubuntu: apt-get install -y postgresql)."""

from __future__ import annotations

import csv
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import ROOT, write_config

from cnnlab.studies.store import database_url

pytestmark = pytest.mark.slow


def pg_bindir() -> Path:
    """The directory of initdb and pg_ctl, or a test failure saying how to install them."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    if which:
        return Path(which).resolve().parent
    pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) not found: install them with "
                "`apt-get install -y postgresql` (CI must do this before the tests)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A throw-away PostgreSQL server on 127.0.0.1 (as the `postgres` user when run as root)."""
    bindir = pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="cnnlab-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()

    def pg(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user, *args], capture_output=True, text=True, check=check, timeout=120)

    pg(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    pg(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "start",
       "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off")
    try:
        pg(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "cnnlab")
        yield f"postgresql://postgres@127.0.0.1:{port}/cnnlab"
    finally:
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop", check=False)
        shutil.rmtree(root, ignore_errors=True)


def start(study: Path, cwd: Path, url: str) -> tuple[subprocess.Popen, list[str]]:
    """`cnnlab study STUDY --storage URL` as run on another machine (its own working folder)."""
    cwd.mkdir(exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "cnnlab", "study", str(study), "--storage", url],
                            cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    return proc, lines


def results(cwd: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((cwd / "studies" / "shared" / "results.csv").open()))


def test_two_machines_share_a_postgres_study_and_survive_a_kill(tmp_path, mnist_small, postgres_url, capsys,
                                                               monkeypatch):
    base = write_config(tmp_path / "base.yaml",
                        {"format": "idx", "path": str(mnist_small), "limit_train": 240, "val_fraction": 0.25},
                        model={"name": "cnn", "channels": [4], "norm": "batch"}, train={"epochs": 1, "batch_size": 60})
    study = tmp_path / "shared.yaml"
    study.write_text(yaml.safe_dump({"base": str(base), "mode": "grid", "seeds": [0, 1],
                                     "axes": {"model.dropout": [0.0, 0.25, 0.5]}}))
    a, b = tmp_path / "machine-a", tmp_path / "machine-b"
    proc_a, lines_a = start(study, a, postgres_url)
    proc_b, lines_b = start(study, b, postgres_url)

    # Kill machine B with SIGKILL half-way: once it has finished a run and started another.
    deadline = time.monotonic() + 120
    while not any(" seed " in line for line in lines_b) and proc_b.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert proc_b.poll() is None, "machine B finished before it could be killed:\n" + "".join(lines_b)
    os.kill(proc_b.pid, signal.SIGKILL)
    proc_b.wait()

    assert proc_a.wait(timeout=300) == 0, "".join(lines_a)
    rows_a = results(a)
    keys = sorted(r["key"] for r in rows_a)
    assert len(rows_a) == 6 and len(set(keys)) == 6 and {r["status"] for r in rows_a} == {"completed"}

    # B's command again (in this process, in B's folder): nothing is left to train; it writes the same results
    # from the database.
    from cnnlab.cli import main

    capsys.readouterr()
    monkeypatch.chdir(b)
    assert main(["study", str(study), "--storage", postgres_url]) == 0
    again = capsys.readouterr()
    assert " seed " not in again.out + again.err, again
    assert sorted(r["key"] for r in results(b)) == keys
    assert {r["key"]: r["val_acc"] for r in results(b)} == {r["key"]: r["val_acc"] for r in rows_a}

    # In the database: every run recorded exactly once, by both machines, nothing still running.
    trials = optuna.load_study(study_name="shared", storage=database_url(postgres_url)).get_trials(deepcopy=False)
    done = [t for t in trials if "result" in t.user_attrs and "duplicate" not in t.user_attrs]
    assert sorted(t.user_attrs["key"] for t in done) == keys
    assert len({t.user_attrs["lease"]["pid"] for t in done}) == 2  # A's process and B's first one
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    lost = [t for t in trials if "lost" in t.user_attrs]
    assert len(lost) <= 1  # B's run in progress, taken over by A
    print(f"{len(trials)} trials; taken back from machine B: {[t.user_attrs['lost'] for t in lost]}")

    # --status from a third machine reads the same study without running anything.
    assert main(["study", str(study), "--storage", postgres_url, "--status"]) == 0
    out = capsys.readouterr().out
    assert "6 done, 0 running, 0 failed, 0 left (of 6)" in out and "| model.dropout=0.5 |" in out
