"""From a validated config to a finished run directory (and back again for resume).

Everything that can fail on user input is built first (session.py), so bad input never
leaves a half-made run behind; then the run directory is made and the one loop trains. In a
distributed run every process trains; rank 0 alone makes and writes the run directory, prints
and draws, the others follow it (rundir.Follower).
"""

from __future__ import annotations

import contextlib
import functools
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab import distributed, rundir
from cnnlab.callbacks import RunContext
from cnnlab.config import Config
from cnnlab.data import memo
from cnnlab.data.inspect import class_counts, count_lines, train_warning, warn
from cnnlab.errors import DivergedError, Interrupted, PeerLost, UserError
from cnnlab.plots.curves import drawn_at_end, plot_curves
from cnnlab.plots.samples import write_samples
from cnnlab.reopen import open_run
from cnnlab.rundir import Run
from cnnlab.training.heldout import write_heldout
from cnnlab.training.logged import metric_mode
from cnnlab.training.progress import Reporter
from cnnlab.training.session import Session, build_session
from cnnlab.training.shared import shared_samples
from cnnlab.training.signals import StopRequests
from cnnlab.training.trainer import StopTraining, Trainer, TrainState
from cnnlab.usercode import record
from cnnlab.usercode.blame import blame
from cnnlab.usercode.imports import short
from cnnlab.usercode.record import CodeSource


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]


def train(cfg: Config, *, run_dir: Path | None = None, quiet: bool = False,
          callbacks: list[Any] | None = None, samples: bool = True, shared: bool = False) -> RunResult:
    """Build everything, create the run directory, train, write the summary.

    `samples`: write samples.png before the first step (off only in the test that shows the
    figure leaves the training random streams alone). `shared`: one of many runs this process
    trains one after another (a study worker's): the dataset and samples.png are shared with
    the others and curves.png is drawn once, at the end (training/shared.py)."""
    rundir.check_writable(cfg.train.out_dir if run_dir is None else Path(run_dir).parent)
    with _data_shared(shared):
        session = build_session(cfg, callbacks=callbacks or [])
    return fit(session, run_dir=run_dir, quiet=quiet, samples=samples, shared=shared)


def fit(session: Session, *, run_dir: Path | None = None, quiet: bool = False, progress: bool | None = None,
        samples: bool = True, objects: dict[str, str] | None = None, shared: bool = False) -> RunResult:
    """Train a built session (build_session: everything checked, nothing written) into a new run
    directory (or `run_dir`). `objects`: what was handed over from Python, for code.json;
    `shared`: see train."""
    cfg = session.cfg
    main = session.world.is_main
    run: Run | None = None
    if main and run_dir is None:
        run = rundir.create(cfg.train.out_dir, cfg.name or "run")
    elif main:
        run = Run(run_dir)  # type: ignore[arg-type]
        run.path.mkdir(parents=True, exist_ok=True)
    path = distributed.broadcast_object(str(run.path) if run is not None else None, session.world)
    run = run if run is not None else rundir.Follower(path)
    counts = class_counts(session.bundle)
    run.write_config(cfg)
    manifest = record.snapshot(cfg, objects)
    if any(manifest.values()):
        run.write_code(manifest, record.copies(manifest))
    run.write_data_info({**session.data_info(), "class_counts": counts})  # the report shows them without the data
    if session.init_report is not None:
        run.write_init_from(session.init_report)
    reporter = _reporter(session, quiet, progress)
    reporter.message(_banner(session, run, counts))
    if main:
        warn(train_warning(counts, session.bundle.classes))  # even when quiet: it can spoil the run
    if samples and main and shared:
        shared_samples(session, run.samples_png)
    elif samples and main:
        write_samples(session.bundle, session.pipeline, cfg.seed, run.samples_png, title=run.name)
    stops = StopRequests()
    trainer = session.trainer(run, reporter, stop_requested=stops.requested)
    return _fit(session, trainer, run, stops, first=True, shared=shared)


def _data_shared(shared: bool) -> contextlib.AbstractContextManager[None]:
    """build_data reuses the bundle an earlier run in this process built (data/memo.py)."""
    return memo.shared() if shared else contextlib.nullcontext()


def resume(run_dir: Path, *, quiet: bool = False, callbacks: list[Any] | None = None, progress: bool | None = None,
           code: CodeSource | None = None, shared: bool = False) -> RunResult:
    """Continue an interrupted run from its last checkpoint; from scratch if it never finished an epoch.
    `shared`: see train."""
    opened = open_run(run_dir, None, code)
    run, cfg, stored = opened.run, opened.cfg, opened.info
    data = cfg.data
    if data.in_memory == "auto" and isinstance(stored.get("in_memory"), bool):
        # Continue on the data path the run started on (memory may differ now): the loaders draw differently.
        data = data.model_copy(update={"in_memory": stored["in_memory"]})
    # The same classes and split sizes, or the replayed batches would not be the run's.
    # model.init_from only for a run that never saved last.pt: otherwise its own weights replace them.
    with _data_shared(shared):
        bundle = opened.bundle(sizes=True, data=data)
    session = build_session(cfg, bundle, callbacks=callbacks or [], initial_weights=not run.has_checkpoint("last"))
    session.init_report = run.init_from() or session.init_report
    world = session.world
    if not world.is_main:  # rank 0 checks the lock and writes; any number of processes may continue a run
        run = rundir.Follower(run.path)
    held = run.holder() if world.is_main else None
    if held is not None:
        raise UserError(f"{run.path}: this run is being trained by {held}; wait for it, or stop that process")
    reporter = _reporter(session, quiet, progress)
    stops = StopRequests()
    trainer = session.trainer(run, reporter, stop_requested=stops.requested)
    died = run.died() if world.is_main else None
    if died is not None:
        reporter.message(f"{run.name}: the process that was training it died without a word ({died})")
    if run.has_checkpoint("last"):
        trainer.restore(run.checkpoint("last"))
        distributed.seed_rank(cfg.seed, trainer.position(), world)  # restore gave every rank rank 0's stream
        reporter.message(f"resuming {run.name} {trainer.position()} of {cfg.train.epochs} epochs"
                         + (f" in {world.size} processes" if world.distributed else ""))
    return _fit(session, trainer, run, stops, shared=shared)


def _reporter(session: Session, quiet: bool, progress: bool | None = None) -> Reporter:
    return Reporter(session.cfg.train.epochs, len(session.train_loader), quiet=quiet or not session.world.is_main,
                    bars=progress)


def _banner(s: Session, run: Run, counts: dict[str, list[int]]) -> str:
    sizes = ", ".join(f"{k} {v}" for k, v in s.bundle.info()["sizes"].items())
    shape = "x".join(map(str, s.bundle.image_shape))
    if s.pipeline.input_shape != s.bundle.image_shape:
        shape += " -> " + "x".join(map(str, s.pipeline.input_shape))
    where = "in memory" if s.bundle.in_memory else "read from files per batch"
    text = (f"run {run.path}\ndata {short(s.bundle.format)}: {sizes}; {s.bundle.num_classes} classes; {shape}; {where}"
            + "".join(f"\n{'per class' if i == 0 else '         '} {line}"
                      for i, line in enumerate(count_lines(counts, s.bundle.classes)))
            + f"\nmodel {short(s.cfg.model.name)}: {s.engine.param_count():,} parameters; device {s.device}"
            + (f"; {s.label}" if s.label else "")
            + (f"\ndistributed {s.world.size} processes ({'nccl' if s.device.type == 'cuda' else 'gloo'}), "
               f"{s.cfg.train.batch_size} images per step shared between them" if s.world.distributed else ""))
    t = s.cfg.train
    options = [f"evaluating EMA weights (decay {t.ema:g})" if t.ema is not None else "",
               f"early stop on {t.early_stop.monitor} (patience {t.early_stop.patience})" if t.early_stop else "",
               f"tta {t.tta}" if t.tta != "none" else "", f"compiled ({t.compile_mode})" if t.compile else "",
               f"l2 {s.cfg.loss.l2:g} on {s.cfg.loss.l2_params}" if s.cfg.loss.l2 > 0 else "",
               f"warm-up {s.cfg.schedule.warmup_epochs:g} epochs" if s.cfg.schedule.warmup_epochs else "",
               (f"landscape probe every {t.probe.every} steps ({t.probe.steps} sizes, {t.probe.range[0]:g}-"
                f"{t.probe.range[1]:g} x lr; probe.csv)") if t.probe is not None else ""]
    options = [o for o in options if o]
    return (text + ("\noptions " + "; ".join(options) if options else "")
            + "".join(f"\nnote {n}" for n in s.notes))


def _fit(session: Session, trainer: Trainer, run: Run, stops: StopRequests, first: bool = False,
         shared: bool = False) -> RunResult:
    """Train under the run's lock, from its start (`first`: init.pt is written after on_run_start)
    or where it stopped; summary.json says how it ended, whatever happens. `shared`: curves.png
    is drawn once, when the training loop ends however it ends, not after every epoch."""
    env = _environment() if shared else rundir.environment()  # once a run: it asks git
    status, reason = "completed", None
    resumed = trainer.state.epoch > 0 or trainer.position() != "after epoch 0"
    context = RunContext(run.path, session.cfg.to_dict(), session.bundle.classes, session.cfg.train.epochs,
                         len(session.train_loader), resumed, run.writes, trainer.state.history,
                         trainer.state.step_losses, run)
    with run.training():
        run.write_summary(make_summary(session, trainer.state, "running", None, env))
        try:
            trainer.hooks.call("on_run_start", context)
            if first:
                trainer.save_init()
            with stops, _curves_at_end(shared, session, trainer, run):
                trainer.fit()
            write_heldout(session, run)  # after the last checkpoint: the run's numbers are already final
        except StopTraining as e:
            status, reason = e.status, e.reason
            if status == "early_stopped":
                write_heldout(session, run)
        except DivergedError as e:
            status, reason = "diverged", str(e)
            raise
        except Interrupted as e:
            status, reason = "interrupted", f"{signal.Signals(e.signum).name} {e.where}; `cnnlab resume` continues it"
            e.run = run.path
            raise
        except KeyboardInterrupt:
            status, reason = "interrupted", "stopped by the user; `cnnlab resume` continues it from the last checkpoint"
            raise
        except PeerLost as e:
            status, reason = "failed", f"{e}; `cnnlab resume` continues it from the last checkpoint"
            e.run = run.path  # type: ignore[attr-defined]
            raise
        except Exception as e:
            blamed = blame(e, f"{run.path}: your code raised during training")  # the user's bug: their frames
            status, reason = "failed", str(blamed) if blamed is not None else f"{type(e).__name__}: {e}"
            if blamed is not None and blamed is not e:
                raise blamed from None
            raise
        finally:
            summary = make_summary(session, trainer.state, status, reason, env)
            ended = None
            try:
                trainer.hooks.call("on_run_end", status, summary)
            except Exception as e:  # a callback failing at the end fails a run that had completed
                if status == "completed":
                    ended, status, reason = e, "failed", str(e)
                    summary = make_summary(session, trainer.state, status, reason, env)
            try:
                run.write_summary(summary)
            except UserError:
                if status == "completed":
                    raise
                # the run already failed (a full disk, say): its own error is the one to report
            if ended is not None:
                raise ended
    distributed.finish()
    signum = stops.requested()
    if shared and signum is not None and status == "completed":
        # Asked to stop after the last step (in the last evaluation, say): the run is complete and
        # saved, and the study it belongs to stops here instead of starting its next run (alone,
        # the command just ends). Lost before: both workers of a study often end their runs together.
        stopped = Interrupted(signum, "after a run's last epoch (the run is complete)")
        stopped.run = run.path
        raise stopped
    return RunResult(run.path, summary)


@functools.cache
def _environment() -> dict[str, Any]:
    """The environment of a run of many (a study worker's): asked once per process, as git's two
    commands cost a small run a tenth of its time (bench/RESULTS.md, "Study overhead")."""
    return rundir.environment()


@contextlib.contextmanager
def _curves_at_end(shared: bool, session: Session, trainer: Trainer, run: Run) -> Iterator[None]:
    """`shared`: curves.png drawn once when the block ends, however it ends, from the epochs done
    (also for a run resumed after its last epoch, whose loop has nothing left to draw)."""
    if not shared:
        yield
        return
    with drawn_at_end():
        try:
            yield
        finally:
            if run.writes and trainer.state.history:
                plot_curves(trainer.state.history, trainer.state.step_losses, len(session.train_loader),
                            run.curves_png, title=run.name)


def make_summary(session: Session, state: TrainState, status: str, reason: str | None,
                 env: dict[str, Any]) -> dict[str, Any]:
    """Headline numbers of a run: the chosen (best) epoch's metrics, bests, and provenance."""
    history = state.history
    best_row = next((m for m in history if m["epoch"] == state.best_epoch), history[-1] if history else {})
    summary: dict[str, Any] = {
        "name": session.cfg.name,
        "status": status,
        "reason": reason,
        "val_acc": best_row.get("val_acc"),
        "test_acc": best_row.get("test_acc"),
        "val_top5": best_row.get("val_top5"),
        "test_top5": best_row.get("test_top5"),
        "best_epoch": state.best_epoch,
        "selected_by": session.cfg.train.select or ("val_acc" if "val" in session.eval_loaders else "last epoch"),
        "epochs": state.epoch,
        "epochs_planned": session.cfg.train.epochs,
        "params": session.engine.param_count(),
        "engine": session.cfg.engine,
        "wall_seconds": round(state.elapsed, 3),
        "device": str(session.device),
        "processes": session.world.size,
        "device_name": torch.cuda.get_device_name(session.device) if session.device.type == "cuda" else None,
        "seed": session.cfg.seed,
        "final": history[-1] if history else None,
        **_best_errors(bests := _bests(history)),
        "best": bests,
        "data": {"sizes": session.bundle.info()["sizes"], "classes": session.bundle.num_classes},
        "init_from": None if session.init_report is None else
        {k: session.init_report[k] for k in ("source", "sha256", "loaded")} | {"skipped": len(session.init_report["skipped"])},
    }
    summary.update(env)
    return summary


def _best_errors(bests: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Lowest error of each split and its epoch, as top-level keys (None for a missing split).

    The train error is 1 - the accuracy counted during each epoch's training steps (train mode,
    augmented batches, changing weights), not a separate pass over the training set.
    """
    out: dict[str, Any] = {}
    for split in ("train", "val", "test"):
        best = bests.get(f"{split}_error")
        out[f"best_{split}_error"] = best["value"] if best else None
        out[f"best_{split}_error_epoch"] = best["epoch"] if best else None
    return out


def _bests(history: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Best value of every loss/accuracy metric over the epochs, and the epoch it came in."""
    out = {}
    keys = [k for k in (history[0] if history else {}) if k.endswith(("_loss", "_acc", "_top5", "_ece", "_f1", "_l2"))]
    for k in keys:
        pick = max if metric_mode(k) == "max" else min
        row = pick(history, key=lambda m, k=k: m[k])
        out[k] = {"value": row[k], "epoch": row["epoch"]}
        if k.endswith("_acc"):
            out[k.replace("_acc", "_error")] = {"value": 1 - row[k], "epoch": row["epoch"]}
    return out
