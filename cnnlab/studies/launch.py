"""`cnnlab study`: check the study, open its storage, run N workers, write the outputs.

With --workers N > 1 the command works as worker 0 and starts N - 1 more processes
(`cnnlab study FILE --worker`); on CPU each gets cores // N threads, on a GPU they share
it, and on a machine with several GPUs worker i gets GPU i mod G alone (CUDA_VISIBLE_DEVICES),
so 8 workers on 2 GPUs run 4 on each. Killing the command (Ctrl-C or kill -9) and running it again finishes only what is
missing. With --slurm the workers run as a Slurm job array instead (slurm.py), one per task.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cnnlab
from cnnlab.data import memo
from cnnlab.data.build import read_raw
from cnnlab.errors import ConfigError
from cnnlab.io import write_json
from cnnlab.lease import HOST, PARENT_ENV, exit_with_parent
from cnnlab.rundir import Run
from cnnlab.studies import STUDY_JSON, forked, slurm, slurm_checks
from cnnlab.studies.plan import Plan, build_plan
from cnnlab.studies.results import FIGURES_EVERY_S, TABLES_EVERY_S, Snapshot, Writer, snapshot
from cnnlab.studies.spec import Study, epoch_metric, load_study
from cnnlab.studies.store import Store, make_storage, storage_label
from cnnlab.studies.worker import Worker


@dataclass
class Opened:
    plan: Plan
    store: Store | None  # None: --status of a study that never started
    folder: Path
    storage: str


def open_study(path: Path, overrides: list[str], storage: str | None, create: bool = True,
               worker_index: int = 0, check_data: bool = False, plan: Plan | None = None) -> Opened:
    """Parse and plan the study (every config checked; or take `plan`), then open or create its storage."""
    if plan is None:
        plan = build_plan(load_study(path, overrides))
    study = plan.study
    if check_data:
        check_metric_data(plan)
    folder = study.folder
    backend = make_storage(storage, folder, create=create)
    if backend is None:
        return Opened(plan, None, folder, storage_label(storage, folder))
    sampler, pruner = search_strategy(study, worker_index, shared=storage is not None)
    try:
        store = Store(backend, study.name, study.direction, plan.fingerprint, str(path), create=create,
                      sampler=sampler, pruner=pruner)
    except KeyError:  # --status: the database has no study of this name yet
        return Opened(plan, None, folder, storage_label(storage, folder))
    return Opened(plan, store, folder, storage_label(storage, folder))


def search_strategy(study: Study, worker_index: int, shared: bool) -> tuple[Any, Any]:
    """Optuna's sampler and pruner for a search (None for ablation and grid)."""
    import optuna

    spec = study.spec.search
    if spec is None:
        return None, None
    # Each worker samples with its own seed, or parallel workers would propose the same points;
    # workers on other machines (a shared --storage) also differ by host.
    seed = spec.seed + 1000 * worker_index + (zlib.crc32(HOST.encode()) % 10**6 if shared else 0)
    sampler = (optuna.samplers.RandomSampler(seed=seed) if spec.sampler == "random"
               else optuna.samplers.TPESampler(seed=seed))
    if spec.pruner == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials, n_warmup_steps=spec.warmup_epochs)
    elif spec.pruner == "halving":
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=spec.min_epochs, reduction_factor=spec.reduction_factor)
    else:
        pruner = optuna.pruners.NopPruner()
    return sampler, pruner


def check_metric_data(plan: Plan) -> None:
    """The metric's split must exist: fail now, not after every run has trained."""
    metric = epoch_metric(plan.study.spec.metric)
    split = metric.split("_")[0]
    data = plan.base_cfg.data
    if split == "train" or (split == "val" and (plan.study.spec.cv or data.val_fraction > 0)):
        return
    seed = plan.units[0].seed if plan.units else plan.base_cfg.seed
    raw = read_raw(data, seed)
    memo.hand_over(data, seed, raw)  # the first run of this process takes this read
    if getattr(raw, split) is None:
        hint = "set data.val_fraction > 0 or cv: K" if split == "val" else "choose a val_ metric"
        raise ConfigError(f"{plan.study.path}: metric: '{plan.study.spec.metric}' needs a {split} split, "
                          f"but {data.path} has none; {hint}")


def default_threads(workers: int) -> int:
    """torch threads per worker on CPU: the cores split between the workers."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, cores // workers)


def run_study(path: Path, overrides: list[str], workers: int | None, storage: str | None,
              say: Callable[[str], None] = print) -> tuple[Opened, Snapshot]:
    """Run (or finish) a study; returns it with the final snapshot of its results."""
    opened = open_study(path, overrides, storage, check_data=True)
    plan, store, folder = opened.plan, opened.store, opened.folder
    assert store is not None
    n = workers or plan.study.spec.workers
    _remove_stale_temporaries(folder)
    write_json(folder / STUDY_JSON, describe(opened, n))
    writer = Writer(plan, store, folder)
    before = snapshot(plan, store).progress
    say(f"study {plan.study.name}: {plan.study.mode}, {before.total} {'trials' if plan.study.mode == 'search' else 'runs'}; "
        f"{before.line()}; {n} worker{'s' if n > 1 else ''}; state in {opened.storage}")
    worker = Worker(plan, store, folder, writer, say)
    procs: list[Any] = []
    try:
        procs = _work(worker, path, overrides, storage, n, say)
        # This worker returns once the study is complete: the final figures are drawn while the other
        # worker processes exit (waiting for them first left a core idle at the end of every study).
        final = writer(final=True, processes=n)  # the other workers' cores are free now
        if not _wait(procs, say) and worker.run():  # what a failed worker process left is finished here
            final = writer(final=True)
    except KeyboardInterrupt:
        _stop(procs)
        writer.flush()  # the tables show every run that finished
        raise
    assert final is not None
    return opened, final


def _work(worker: Worker, path: Path, overrides: list[str], storage: str | None, n: int,
          say: Callable[[str], None]) -> list[Any]:
    """This process's worker, and N - 1 more beside it (returned: they end on their own)."""
    if n == 1:
        worker.run()
        return []
    # This process is worker 0; N - 1 more start beside it, each with its share of the cores.
    worker.prepare()  # one process fills the queue
    procs = _start_processes(path, overrides, storage, n, say)
    try:
        with limited_threads(default_threads(n)):
            worker.run()
    except KeyboardInterrupt:
        _stop(procs)
        raise
    return procs


@contextlib.contextmanager
def limited_threads(n: int) -> Iterator[None]:
    """torch's (and NumPy BLAS's) CPU threads limited to n inside the block."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits  # comes with scikit-learn
    except ImportError:
        threadpool_limits = None
    try:
        if threadpool_limits is None:
            yield
        else:
            with threadpool_limits(n):
                yield
    finally:
        torch.set_num_threads(before)


def _remove_stale_temporaries(folder: Path, age_s: float = 300.0) -> None:
    """Half-written outputs of a killed command (".results.csv.xyz.tmp"); a write takes
    milliseconds, so a temporary file this old belongs to no live process."""
    now = time.time()
    for tmp in folder.glob(".*.tmp"):
        try:
            if now - tmp.stat().st_mtime > age_s:
                tmp.unlink()
        except OSError:
            pass


def _start_processes(path: Path, overrides: list[str], storage: str | None, n: int,
                     say: Callable[[str], None]) -> list[Any]:
    """Workers 1..n-1: forked from this process on a CPU-only Linux machine (studies/forked.py), else as
    `cnnlab study FILE --worker` processes, each with its GPU."""
    from cnnlab.device import visible_gpus, worker_gpu

    gpus = visible_gpus()
    if not gpus and forked.can_fork():
        return [forked.start(run_worker, path, overrides, storage, default_threads(n), i, say) for i in range(1, n)]
    env = dict(os.environ)
    # Workers import this very copy of cnnlab, whatever their working directory.
    root = str(Path(cnnlab.__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env[PARENT_ENV] = str(os.getpid())  # so a worker still starting up when we die notices (lease.py)
    cmd = [sys.executable, "-m", "cnnlab", "study", str(path), *overrides, "--worker",
           "--threads", str(default_threads(n))]
    if storage:
        cmd += ["--storage", storage]
    if len(gpus) >= 2:  # worker 0, this process, keeps the first: "cuda" is the first visible GPU
        per = ", ".join(f"GPU {g}: {len(range(i, n, len(gpus)))}" for i, g in enumerate(gpus[:n]))
        say(f"{n} workers over {len(gpus)} GPUs, round-robin ({per})")
    procs = []
    for i in range(1, n):
        gpu = worker_gpu(i, gpus)
        procs.append(subprocess.Popen(cmd + ["--worker-index", str(i)],
                                      env=env if gpu is None else {**env, "CUDA_VISIBLE_DEVICES": gpu}))
    return procs


def _wait(procs: list[Any], say: Callable[[str], None]) -> bool:
    """Whether every worker process ended well."""
    bad = [c for c in (p.wait() for p in procs) if c != 0]
    if bad:
        say(f"{len(bad)} of {len(procs)} worker processes exited with an error (codes {bad}); finishing their work here")
    return not bad


def _stop(procs: list[Any]) -> None:
    """After Ctrl-C: the workers got it too; give them a moment to hand their trials back."""
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()


def run_worker(path: Path, overrides: list[str], storage: str | None, threads: int | None,
               worker_index: int = 0, say: Callable[[str], None] = print, in_slurm: bool = False) -> int:
    """A worker process started by `cnnlab study --workers N`, or one Slurm array task of
    `--slurm` (in_slurm): run trials, then exit."""
    exit_with_parent()  # first: the parent may die while torch is still importing
    if in_slurm:
        slurm.stop_on_sigterm()  # requeue, preemption, scancel: save the run, hand the trial back
    import torch

    opened = open_study(path, overrides, storage, worker_index=worker_index)
    assert opened.store is not None
    # The figures while the study runs are one process's: the launching one (worker 0), or Slurm task 0;
    # drawn by every worker they would only be drawn again, at the cost of the runs.
    # The tables likewise: a worker process of `--workers N` leaves them to the launching process, which
    # writes them from the storage (this worker's results included) and at the end; a Slurm task has none.
    first_task = in_slurm and os.environ.get("SLURM_ARRAY_TASK_ID") == "0"
    writer = Writer(opened.plan, opened.store, opened.folder, figure_every=FIGURES_EVERY_S if first_task else math.inf,
                    tables_every=TABLES_EVERY_S if in_slurm else math.inf)
    try:
        with limited_threads(threads or torch.get_num_threads()):
            ran = Worker(opened.plan, opened.store, opened.folder, writer, say).run()
    finally:
        if in_slurm and not first_task:
            writer.flush()  # the tables show this worker's last runs too
    if first_task:
        # The study is complete (a worker returns only then): task 0 draws the final figures,
        # the others have written the tables after each of their runs.
        writer(final=True)
    return ran


def submit_study(path: Path, overrides: list[str], storage: str | None, request: slurm.Request,
                 wait: bool = False, say: Callable[[str], None] = print) -> tuple[Opened, Snapshot, str | None]:
    """`--slurm`: check, open the study's storage, submit `request.workers` workers as one job array
    (fewer when fewer runs are left); with `wait`, wait for the jobs and write the final outputs.
    Returns the study, its snapshot and the job id (None: nothing was left to run)."""
    plan = build_plan(load_study(path, overrides))  # the study file first: its errors come before Slurm's
    check_metric_data(plan)
    slurm_checks.require_sbatch()
    slurm_checks.check_time(request.time)
    slurm_checks.check_gpus(request.gpus)
    partition, nodes = slurm_checks.partition_nodes(request.partition)
    slurm_checks.check_reachable(storage, plan.study.folder, partition, nodes)
    opened = open_study(path, overrides, storage, plan=plan)
    store, folder = opened.store, opened.folder
    assert store is not None
    _remove_stale_temporaries(folder)
    progress = snapshot(plan, store).progress
    left = progress.total - progress.done - progress.failed
    if left <= 0:
        say(f"study {plan.study.name}: nothing left to run ({progress.line()}); nothing submitted")
        return opened, Writer(plan, store, folder)(final=True), None
    n = min(request.workers or plan.study.spec.workers, left)
    request = dataclasses.replace(request, workers=n)
    write_json(folder / STUDY_JSON, describe(opened, n))
    worker = [sys.executable, "-m", "cnnlab", "study", str(path.resolve()), *overrides, "--worker", "--slurm",
              *(["--storage", storage] if storage else [])]
    job = slurm.submit(folder, slurm.batch_script(worker, folder, plan.study.name, request), request, opened.storage)
    say(f"study {plan.study.name}: {progress.line()}; submitted job array {job} ({n} worker{'s' if n > 1 else ''}) "
        f"to partition {partition}; state in {opened.storage}; logs in {folder / slurm.SLURM / slurm.LOGS}")
    if not wait:
        return opened, snapshot(plan, store), job
    last: list[str] = []

    def progress_line() -> None:
        line = snapshot(plan, store).progress.line()
        if not last or line != last[-1]:  # only when it changed
            last.append(line)
            say(line)

    try:
        slurm.wait(folder, [job], progress_line)
    except KeyboardInterrupt:
        say(f"stopped waiting; job array {job} goes on: `--status` shows it, `--cancel` stops it")
        raise
    return opened, Writer(plan, store, folder)(final=True), job


def cancel_study(path: Path, overrides: list[str]) -> tuple[Path, list[str]]:
    """`--cancel`: scancel the study's jobs still queued or running (their workers save their runs
    and hand their trials back); returns the study folder and the job ids cancelled."""
    folder = load_study(path, overrides).folder
    slurm_checks.require_sbatch()
    return folder, slurm.cancel(folder)


def slurm_tasks(folder: Path) -> list[slurm.Task]:
    """The array tasks of every job the study submitted (none without --slurm)."""
    return slurm.tasks(folder)


def study_status(path: Path, overrides: list[str], storage: str | None) -> tuple[Opened, Snapshot | None]:
    """Progress and the current table, without running or writing anything."""
    opened = open_study(path, overrides, storage, create=False)
    if opened.store is None:
        return opened, None
    return opened, snapshot(opened.plan, opened.store)


def dead_runs(folder: Path) -> list[tuple[str, str, bool]]:
    """Runs of this machine's study folder whose process died mid-run: (runs/NAME, why, has a
    checkpoint). Running the study again reclaims their trials and resumes them from last.pt."""
    found = []
    runs = folder / "runs"
    for run_dir in sorted(runs.iterdir()) if runs.is_dir() else []:
        run = Run(run_dir)
        why = run.died() if run_dir.is_dir() else None
        if why is not None:
            found.append((f"runs/{run_dir.name}", why, run.resumable()))
    return found


def describe(opened: Opened, workers: int) -> dict:
    """study.json: what this study is, for people and tools reading the folder later."""
    plan, s = opened.plan, opened.plan.study
    return {
        "name": s.name, "mode": s.mode, "study_file": str(s.path.resolve()), "storage": opened.storage,
        "metric": s.spec.metric, "direction": s.direction, "table_metrics": s.table_metrics,
        "seeds": plan.seeds, "cv": s.spec.cv, "workers": workers,
        "axes": {a.name: [{"label": lv.label, "overrides": lv.overrides} for lv in a.levels] for a in s.axes},
        "search": s.spec.search.model_dump() if s.spec.search else None,
        "variants": [{"label": v.label, "overrides": v.overrides, "base": v.is_base, "key": v.key} for v in plan.variants],
        "runs": len(plan.units) if s.mode != "search" else None,
        "base_config": s.base_raw, "fingerprint": plan.fingerprint,
    }

