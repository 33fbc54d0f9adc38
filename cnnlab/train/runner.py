"""From a validated config to a finished run directory (and back again for resume).

Everything that can fail on user input (data, model, options) is built before the run
directory is created, so bad input never leaves a half-made run behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab import rundir
from cnnlab.config import Config
from cnnlab.data import DataBundle, build_data
from cnnlab.data.augment import Pipeline, build_pipeline
from cnnlab.data.loader import Loader, make_loader
from cnnlab.device import amp_dtype, autocast, memory_format
from cnnlab.device import channels_last as use_channels_last
from cnnlab.device import setup as device_setup
from cnnlab.errors import ConfigError, DivergedError, UserError
from cnnlab.io import write_json
from cnnlab.models import build_model, count_parameters
from cnnlab.train import checkpoint
from cnnlab.train.early_stop import EarlyStopping
from cnnlab.train.losses import L2Penalty, build_loss, build_penalty
from cnnlab.train.metrics import metric_mode
from cnnlab.train.optim import OPTIMIZERS
from cnnlab.train.progress import Reporter
from cnnlab.train.schedule import Schedule, build_schedule
from cnnlab.train.trainer import Callback, StopTraining, Trainer, TrainState


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]


# ----------------------------------------------------------------------------- session


@dataclass
class Session:
    """Everything a run needs, built from its config, before any file is written."""

    cfg: Config
    device: torch.device
    bundle: DataBundle
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    loss_fn: nn.Module
    pipeline: Pipeline
    train_loader: Loader
    eval_loaders: dict[str, Loader]
    generator: torch.Generator
    autocast: Callable[[], contextlib.AbstractContextManager]
    scaler: torch.amp.GradScaler | None
    penalty: L2Penalty | None = None
    early_stop: EarlyStopping | None = None
    scratch: dict[str, Any] | None = None  # engine: scratch: net, engine_optimizer, engine_loss, dropout_rng

    def param_count(self) -> int:
        """Trainable parameters of the network this run trains."""
        if self.scratch is not None:
            return int(sum(p.data.size for p in self.scratch["net"].parameters()))
        return count_parameters(self.model)

    def data_info(self) -> dict[str, Any]:
        """data.json: the bundle's description, with the model's input shape (after augment's always-ops)."""
        return {**self.bundle.info(), "input_shape": list(self.pipeline.input_shape)}

    def meta(self) -> dict[str, Any]:
        """Plain data stored in every checkpoint so it explains itself."""
        return {"engine": self.cfg.engine, "config": self.cfg.to_dict(), "data": self.data_info()}

    def trainer(self, run_dir: Path, reporter: Reporter, callbacks: list[Callback]) -> Trainer:
        t = self.cfg.train
        own = [self.early_stop] if self.early_stop is not None else []
        if self.scratch is not None:
            from cnnlab.train.scratch_engine import ScratchTrainer

            return ScratchTrainer(
                **self.scratch, optimizer=self.optimizer, schedule=self.schedule, loss_fn=self.loss_fn,
                train_loader=self.train_loader, eval_loaders=self.eval_loaders,
                num_classes=self.bundle.num_classes, epochs=t.epochs, run_dir=run_dir,
                generator=self.generator, autocast=self.autocast, scaler=None, grad_clip=t.grad_clip,
                grad_clip_value=t.grad_clip_value, reporter=reporter, meta=self.meta(), callbacks=own + list(callbacks))
        return Trainer(
            model=self.model, optimizer=self.optimizer, schedule=self.schedule, loss_fn=self.loss_fn,
            train_loader=self.train_loader, eval_loaders=self.eval_loaders,
            num_classes=self.bundle.num_classes, epochs=t.epochs, run_dir=run_dir,
            generator=self.generator, autocast=self.autocast, scaler=self.scaler,
            grad_clip=t.grad_clip, grad_clip_value=t.grad_clip_value, penalty=self.penalty, ema=t.ema,
            tta=t.tta, compile_mode=t.compile_mode if t.compile else None,
            reporter=reporter, meta=self.meta(), callbacks=own + list(callbacks),
        )


def setup_torch(cfg: Config) -> torch.device:
    """Device, threads, seeds and determinism for this run."""
    if cfg.engine == "scratch":
        # torch only prepares batches then; idle torch threads would spin and steal NumPy's cores.
        torch.set_num_threads(1)
    return device_setup(cfg.device, cfg.seed, None if cfg.engine == "scratch" else cfg.train.threads)


def build_session(cfg: Config, bundle: DataBundle | None = None) -> Session:
    """Data, model, loaders, optimizer, schedule and loss for `cfg` (data may be passed in)."""
    if cfg.engine == "scratch":
        from cnnlab.train import scratch_engine

        scratch_engine.check_config(cfg)
    device = setup_torch(cfg)
    bundle = bundle or build_data(cfg.data, cfg.seed, device)
    # Shapes through the augment ops are checked here, before any file is written.
    pipeline = build_pipeline(cfg.augment, bundle.image_shape, bundle.num_classes)
    torch.manual_seed(cfg.seed)  # the same seed gives the same initial weights, whatever came before
    model = build_model(cfg.model.name, cfg.options("model", "name"), pipeline.input_shape, bundle.num_classes)
    channels_last = cfg.engine == "torch" and use_channels_last(cfg.train.channels_last, device)
    model = model.to(device, memory_format=memory_format(channels_last))

    generator = torch.Generator(device=device)
    generator.manual_seed(cfg.seed)
    common = {"pipeline": pipeline, "device": device, "scale": bundle.scale, "mean": bundle.mean, "std": bundle.std,
              "channels_last": channels_last, "workers": cfg.data.workers}
    train_loader = make_loader(bundle.train, batch_size=cfg.train.batch_size, train=True, generator=generator,
                               **common)
    eval_loaders = {name: make_loader(split, batch_size=cfg.train.eval_batch_size, **common)
                    for name, split in bundle.splits().items() if name != "train"}

    engine = None
    if cfg.engine == "scratch":
        dropout_rng = np.random.default_rng(cfg.seed)
        net, _ = scratch_engine.convert(model, dropout_rng)
        engine = {"net": net, "engine_optimizer": scratch_engine.make_optimizer(cfg, net),
                  "engine_loss": scratch_engine.make_loss(cfg), "dropout_rng": dropout_rng}
        optimizer = scratch_engine.stand_in_optimizer(cfg.optim.lr)
    else:
        optimizer = _optimizer(cfg, model)
    schedule = build_schedule(cfg.schedule, optimizer, cfg.train.epochs, len(train_loader))
    loss_fn = build_loss(cfg.loss, bundle.num_classes)
    penalty = build_penalty(cfg.loss, model)
    logged = logged_metrics(bundle, list(eval_loaders), penalty is not None)
    _check_monitor("schedule.monitor", schedule.monitor, logged)
    early = cfg.train.early_stop
    if early is not None:
        _check_monitor("train.early_stop.monitor", early.monitor, logged)
    _check_compiler(cfg, device)
    # fp16 needs loss scaling so small gradients do not flush to zero; bf16 has fp32's range.
    scaler = torch.amp.GradScaler(device.type) if amp_dtype(cfg.train.amp, device) == torch.float16 else None
    return Session(cfg, device, bundle, model, optimizer, schedule, loss_fn, pipeline, train_loader, eval_loaders,
                   generator, autocast(cfg.train.amp, device), scaler, penalty,
                   EarlyStopping(early.monitor, early.patience, early.mode, early.min_delta) if early else None,
                   engine)


def _optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    opts = cfg.options("optim", "name")
    opts.pop("lr")
    return OPTIMIZERS.build(cfg.optim.name, opts, params=model.parameters(), lr=cfg.optim.lr)


def logged_metrics(bundle: DataBundle, eval_splits: list[str], l2: bool = False) -> list[str]:
    """Names of the per-epoch metrics a run with these splits will log."""
    names = ["train_loss", "train_acc"] + (["train_l2"] if l2 else [])
    for split in eval_splits:
        names += [f"{split}_loss", f"{split}_acc"] + ([f"{split}_top5"] if bundle.num_classes >= 5 else [])
    return names


def _check_monitor(key: str, monitor: str | None, known: list[str]) -> None:
    if monitor is None or monitor in known:
        return
    hint = " (this run has no validation split: set data.val_fraction > 0)" if monitor.startswith("val") else ""
    raise ConfigError(f"{key}: '{monitor}' is not logged{hint}; choose one of: {', '.join(known)}")


def _check_compiler(cfg: Config, device: torch.device) -> None:
    """torch.compile on the CPU writes C++: fail now, not at the first step, when there is no compiler."""
    if not cfg.train.compile or device.type != "cpu":
        return
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError:  # a private module that may move: look for the usual names instead
        found = any(shutil.which(c) for c in (os.environ.get("CXX"), "g++", "clang++", "c++") if c)
    else:
        try:
            found = shutil.which(get_cpp_compiler()) is not None
        except Exception:  # torch raises its own error types when it finds no compiler
            found = False
    if not found:
        raise ConfigError("train.compile: torch.compile on the CPU needs a C++ compiler (g++ or clang++) and "
                          "none was found; install one or set train.compile=false")


# ----------------------------------------------------------------------------- runs


def train(cfg: Config, *, run_dir: Path | None = None, quiet: bool = False,
          callbacks: list[Callback] | None = None) -> RunResult:
    """Build everything, create the run directory, train, write the summary."""
    session = build_session(cfg)
    run_dir = run_dir or rundir.create(cfg.train.out_dir, cfg.name or "run")
    run_dir.mkdir(parents=True, exist_ok=True)
    rundir.write_config(run_dir, cfg)
    write_json(run_dir / "data.json", session.data_info())
    reporter = _reporter(session, quiet)
    reporter.message(_banner(session, run_dir))
    trainer = session.trainer(run_dir, reporter, callbacks or [])
    return _fit(session, trainer, run_dir)


def resume(run_dir: Path, *, quiet: bool = False, callbacks: list[Callback] | None = None) -> RunResult:
    """Continue an interrupted run from last.pt; from scratch if it never finished an epoch."""
    run_dir = Path(run_dir)
    cfg = rundir.read_config(run_dir)
    stored = rundir.read_json(run_dir / "data.json")
    data = cfg.data
    if data.in_memory == "auto" and isinstance(stored.get("in_memory"), bool):
        # Continue on the data path the run started on (memory may differ now): the loaders draw differently.
        data = data.model_copy(update={"in_memory": stored["in_memory"]})
    session = build_session(cfg, build_data(data, cfg.seed))
    if stored.get("classes") != session.bundle.classes or stored.get("sizes") != session.bundle.info()["sizes"]:
        raise UserError(f"{cfg.data.path}: the dataset changed since {run_dir.name} started (classes or split sizes differ)")
    reporter = _reporter(session, quiet)
    trainer = session.trainer(run_dir, reporter, callbacks or [])
    if cfg.engine == "scratch" and (run_dir / "last.npz").is_file():
        trainer.restore_npz(run_dir / "last.npz")  # type: ignore[attr-defined]
        reporter.message(f"resuming {run_dir.name} after epoch {trainer.state.epoch}/{cfg.train.epochs}")
    elif cfg.engine == "torch" and (run_dir / "last.pt").is_file():
        trainer.restore(checkpoint.load(run_dir / "last.pt"))
        reporter.message(f"resuming {run_dir.name} after epoch {trainer.state.epoch}/{cfg.train.epochs}")
    return _fit(session, trainer, run_dir)


def _reporter(session: Session, quiet: bool) -> Reporter:
    return Reporter(session.cfg.train.epochs, len(session.train_loader), quiet=quiet)


def _banner(s: Session, run_dir: Path) -> str:
    sizes = ", ".join(f"{k} {v}" for k, v in s.bundle.info()["sizes"].items())
    shape = "x".join(map(str, s.bundle.image_shape))
    if s.pipeline.input_shape != s.bundle.image_shape:
        shape += " -> " + "x".join(map(str, s.pipeline.input_shape))
    where = "in memory" if s.bundle.in_memory else "read from files per batch"
    text = (f"run {run_dir}\ndata {s.bundle.format}: {sizes}; {s.bundle.num_classes} classes; {shape}; {where}\n"
            f"model {s.cfg.model.name}: {s.param_count():,} parameters; device {s.device}"
            + ("; engine scratch (NumPy)" if s.scratch is not None else ""))
    t = s.cfg.train
    options = [f"evaluating EMA weights (decay {t.ema:g})" if t.ema is not None else "",
               f"early stop on {t.early_stop.monitor} (patience {t.early_stop.patience})" if t.early_stop else "",
               f"tta {t.tta}" if t.tta != "none" else "", f"compiled ({t.compile_mode})" if t.compile else "",
               f"l2 {s.cfg.loss.l2:g} on {s.cfg.loss.l2_params}" if s.penalty is not None else "",
               f"warm-up {s.cfg.schedule.warmup_epochs:g} epochs" if s.cfg.schedule.warmup_epochs else ""]
    options = [o for o in options if o]
    return text + ("\noptions " + "; ".join(options) if options else "")


def _fit(session: Session, trainer: Trainer, run_dir: Path) -> RunResult:
    status, reason = "completed", None
    try:
        if session.scratch is not None:
            from cnnlab.scratch import blas_threads

            with blas_threads(session.cfg.train.threads):
                trainer.fit()
        else:
            trainer.fit()
    except StopTraining as e:
        status, reason = e.status, e.reason
    except DivergedError as e:
        status, reason = "diverged", str(e)
        raise
    except KeyboardInterrupt:
        status, reason = "interrupted", "stopped by the user; `cnnlab resume` continues it"
        raise
    except Exception as e:
        status, reason = "failed", f"{type(e).__name__}: {e}"
        raise
    finally:
        summary = make_summary(session, trainer.state, status, reason)
        rundir.write_summary(run_dir, summary)
    return RunResult(run_dir, summary)


def make_summary(session: Session, state: TrainState, status: str, reason: str | None) -> dict[str, Any]:
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
        "selected_by": "val_acc" if "val" in session.eval_loaders else "last epoch",
        "epochs": state.epoch,
        "epochs_planned": session.cfg.train.epochs,
        "params": session.param_count(),
        "engine": session.cfg.engine,
        "wall_seconds": round(state.elapsed, 3),
        "device": str(session.device),
        "device_name": torch.cuda.get_device_name(session.device) if session.device.type == "cuda" else None,
        "seed": session.cfg.seed,
        "final": history[-1] if history else None,
        **_best_errors(bests := _bests(history)),
        "best": bests,
        "data": {"sizes": session.bundle.info()["sizes"], "classes": session.bundle.num_classes},
    }
    summary.update(rundir.environment())
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
    keys = [k for k in (history[0] if history else {}) if k.endswith(("_loss", "_acc", "_top5", "_l2"))]
    for k in keys:
        pick = max if metric_mode(k) == "max" else min
        row = pick(history, key=lambda m, k=k: m[k])
        out[k] = {"value": row[k], "epoch": row["epoch"]}
        if k.endswith("_acc"):
            out[k.replace("_acc", "_error")] = {"value": 1 - row[k], "epoch": row["epoch"]}
    return out
