"""A study's workers as a Slurm job array: the batch script, submission, the study's record of its
jobs, their states, cancelling them, and how a worker in a job stops.

Each array task runs one `cnnlab study FILE --worker --slurm` against the study's storage, like a
`--workers N` process on another machine. The study folder keeps

    slurm/worker.sbatch         the last script submitted (sbatch keeps its own copy of each)
    slurm/jobs.json             every submission: job id, workers, partition, time limit, when
    slurm/logs/<job>_<task>.out each task's output, every attempt appended (--open-mode=append)
    slurm/ends/<job>_<task>.json how its last attempt ended: exit code, host, time

Stopping: `scontrol requeue`, preemption and `scancel` send SIGTERM to every process of the job, the
worker included: it saves the run it trains where it is (last.pt) and hands its trial back, and the
requeued task (or any other worker) resumes that run exactly. The time limit's warning is SIGUSR1,
60 s before, to the batch shell alone (`--signal=B:USR1@60`): the shell passes SIGTERM on, waits for
the worker and requeues the task itself (Slurm does not requeue a job that reaches its limit). A
distinct signal tells it apart from scancel, which must not requeue.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cnnlab.errors import UserError
from cnnlab.io import write_json, write_text
from cnnlab.studies.slurm_checks import STOP_BEFORE_S

SLURM, SCRIPT, JOBS, LOGS, ENDS = "slurm", "worker.sbatch", "jobs.json", "logs", "ends"
QUEUED = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD")


@dataclass
class Request:
    """What the submission asks Slurm for."""

    workers: int
    partition: str | None = None
    time: str | None = None
    gpus: int = 0
    cpus: int | None = None


@dataclass
class Task:
    """One array task as Slurm (or, once it has left the queue, its end record) has it."""

    id: str  # "<job>_<index>"
    state: str  # Slurm's (PENDING, RUNNING, ...), else FINISHED, STOPPED (exit != 0) or GONE (no record)
    detail: str

    @property
    def queued(self) -> bool:
        return self.state in QUEUED

    @property
    def live(self) -> bool:
        return self.state not in ("FINISHED", "STOPPED", "GONE")


def batch_script(worker: list[str], folder: Path, name: str, req: Request) -> str:
    """The sbatch script: `worker` is the command one task runs (without --worker-index/--threads)."""
    slurm = folder.absolute() / SLURM
    options = [f"--job-name=cnnlab-{name}", f"--array=0-{req.workers - 1}",
               f"--output={slurm / LOGS}/%A_%a.out", "--open-mode=append", "--requeue",
               f"--signal=B:USR1@{STOP_BEFORE_S}", f"--chdir={Path.cwd()}"]
    options += [f"--partition={req.partition}"] if req.partition else []
    options += [f"--time={req.time}"] if req.time else []
    options += [f"--gres=gpu:{req.gpus}"] if req.gpus else []
    options += [f"--cpus-per-task={req.cpus}"] if req.cpus else []
    ends = shlex.quote(str(slurm / ENDS))
    command = " ".join(shlex.quote(a) for a in worker)
    root = shlex.quote(str(Path(__file__).resolve().parents[2]))  # workers import this very copy of cnnlab
    return "\n".join([
        "#!/bin/bash",
        f"# One worker of study {name} per array task; written by `cnnlab study --slurm` (docs/studies.md).",
        "# Requeue, preemption and scancel send SIGTERM to the worker too: it saves its run and hands its trial",
        "# back. The time limit's warning (USR1) comes to this shell alone: pass SIGTERM on, then requeue.",
        *(f"#SBATCH {o}" for o in options),
        "",
        f"export PYTHONPATH={root}${{PYTHONPATH:+:$PYTHONPATH}}",
        'task="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"',
        'attempt=$(( ${SLURM_RESTART_COUNT:-0} + 1 ))',
        'echo "cnnlab: task $task, attempt $attempt, on $(hostname) at $(date \'+%F %T\')"',
        "limit=0",
        "trap 'limit=1; kill -TERM \"$worker\" 2>/dev/null' USR1",
        "trap 'echo \"cnnlab: task $task got SIGTERM; the worker saves its run\"' TERM  # and this shell waits for it",
        f'{command} --threads "${{SLURM_CPUS_PER_TASK:-${{SLURM_CPUS_ON_NODE:-1}}}}" '
        '--worker-index "$SLURM_ARRAY_TASK_ID" &',
        "worker=$!",
        'while kill -0 "$worker" 2>/dev/null; do wait "$worker"; done  # a trapped signal ends a wait early',
        'wait "$worker"; rc=$?  # bash keeps the exit code of a child it has reaped',
        f"mkdir -p {ends}",
        "printf '{\"task\": \"%s\", \"exit\": %d, \"attempt\": %d, \"host\": \"%s\", \"ended\": \"%s\", \"time_limit\": %d}\\n' "
        '"$task" "$rc" "$attempt" "$(hostname)" "$(date \'+%F %T\')" "$limit" '
        f'> {ends}/."$task".tmp && mv -f {ends}/."$task".tmp {ends}/"$task".json',
        'if [ "$limit" = 1 ] && [ "$rc" != 0 ]; then',
        '  echo "cnnlab: task $task stopped before its time limit; requeued"',
        '  scontrol requeue "$SLURM_JOB_ID"',
        "fi",
        'exit "$rc"',
        "",
    ])


def submit(folder: Path, script: str, req: Request, storage: str) -> str:
    """Write the script into the study folder, sbatch it, record the job; returns its id."""
    slurm = folder / SLURM
    (slurm / LOGS).mkdir(parents=True, exist_ok=True)  # Slurm opens the output files there
    path = slurm / SCRIPT
    write_text(path, script)
    done = _slurm(["sbatch", "--parsable", str(path)], "sbatch")
    job = done.strip().split(";")[0]  # "<id>" or "<id>;<cluster>"
    if not job.isdigit():
        raise UserError(f"--slurm: sbatch answered {done.strip()!r}, not a job id")
    jobs = recorded(folder)
    jobs.append({"job": job, "workers": req.workers, "partition": req.partition, "time": req.time,
                 "gpus_per_worker": req.gpus, "cpus_per_worker": req.cpus, "storage": storage,
                 "submitted": datetime.now().isoformat(timespec="seconds")})
    write_json(slurm / JOBS, jobs)
    return job


def recorded(folder: Path) -> list[dict[str, Any]]:
    """The study's submissions, oldest first (none: an empty list)."""
    path = folder / SLURM / JOBS
    if not path.is_file():
        return []
    try:
        jobs = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: unreadable ({e}); it lists the study's Slurm jobs: fix or delete it") from None
    return jobs if isinstance(jobs, list) else []


def _slurm(cmd: list[str], what: str) -> str:
    """Run a Slurm command; its error is one line."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise UserError(f"--slurm: {cmd[0]} is not on PATH; install Slurm's client commands") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"--slurm: {what} did not answer within 120 s; is slurmctld up? (`sinfo` says)") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise UserError(f"--slurm: {what} failed: {lines[-1] if lines else f'exit code {done.returncode}'}")
    return done.stdout


def queue() -> dict[str, tuple[str, str]]:
    """This user's array tasks in Slurm's queue now: {"<job>_<index>": (state, node or reason)}."""
    user = pwd.getpwuid(os.geteuid()).pw_name
    out = _slurm(["squeue", f"--user={user}", "--array", "--noheader", "--format=%i|%T|%N|%r|%M"], "squeue")
    tasks = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 5:
            task, state, node, reason, elapsed = parts
            where = f"on {node}, {elapsed}" if node else f"({reason})"
            tasks[task] = (state, where)
    return tasks


def tasks(folder: Path, jobs: list[dict[str, Any]] | None = None) -> list[Task]:
    """Every task of the study's submissions: live ones from squeue, the others from their end record."""
    jobs = recorded(folder) if jobs is None else jobs
    if not jobs:
        return []
    live = queue()
    out = []
    for job in jobs:
        for i in range(int(job["workers"])):
            tid = f"{job['job']}_{i}"
            if tid in live:
                state, where = live[tid]
                out.append(Task(tid, state, where))
                continue
            end = _end(folder, tid)
            if end is None:
                out.append(Task(tid, "GONE", "left the queue without an end record (cancelled before it started, "
                                             "or killed at once)"))
            else:
                how = "requeued after its time-limit warning" if end.get("time_limit") and end.get("exit") else ""
                state = "FINISHED" if end.get("exit") == 0 else "STOPPED"
                detail = f"exit {end.get('exit')} on {end.get('host')} at {end.get('ended')}, attempt {end.get('attempt')}"
                out.append(Task(tid, state, detail + (f"; {how}" if how else "")))
    return out


def _end(folder: Path, task: str) -> dict[str, Any] | None:
    try:
        return json.loads((folder / SLURM / ENDS / f"{task}.json").read_text())
    except (OSError, ValueError):
        return None


def cancel(folder: Path) -> list[str]:
    """scancel the study's jobs that still have a task queued or running; returns their ids."""
    jobs = recorded(folder)
    live = {t.id.split("_")[0] for t in tasks(folder, jobs) if t.live}
    ids = [j["job"] for j in jobs if j["job"] in live]
    if ids:
        _slurm(["scancel", *ids], "scancel")
    return ids


def wait(folder: Path, jobs: list[str], on_tick: Callable[[], None], poll_s: float = 2.0) -> list[Task]:
    """Until no task of `jobs` is queued or running; returns their tasks as they ended."""
    while True:
        mine = [t for t in tasks(folder) if t.id.split("_")[0] in jobs]
        if not any(t.live for t in mine):
            return mine
        on_tick()
        time.sleep(poll_s)


def stop_on_sigterm() -> None:
    """In a job's worker: SIGTERM stops it as Ctrl-C does. While a run trains, the training loop's
    own handler takes it (last.pt saved where the run is); elsewhere it becomes SIGINT, so the
    worker's Ctrl-C path hands the trial back (claims defer it until they are recorded). A background
    task of a batch script starts with SIGINT ignored: Python's handler is put back first."""
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def to_sigint(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop; a second copy changes nothing
        print(f"cnnlab: worker {os.getpid()} got SIGTERM; handing its trial back", file=sys.stderr, flush=True)
        signal.raise_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, to_sigint)
