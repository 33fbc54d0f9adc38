"""One run of a study: train it (or resume it, or reuse it when it already finished) and
reduce it to a results row. A run that diverges or raises becomes a row with its status
and reason; only Ctrl-C escapes.
"""

from __future__ import annotations

import json
import shutil
import traceback
from pathlib import Path
from typing import Any

import torch

from cnnlab.callbacks import Callback
from cnnlab.config import Config
from cnnlab.errors import DivergedError, UserError
from cnnlab.lease import HOST
from cnnlab.rundir import Run
from cnnlab.training import runner
from cnnlab.usercode import record

SPLITS = ("train", "val", "test")
KINDS = ("loss", "acc", "top5", "ece", "balanced_acc", "macro_f1")
HISTORY_KEYS = tuple(f"{s}_{k}" for s in SPLITS for k in ("loss", "acc"))
FINISHED = ("completed", "early_stopped", "pruned", "diverged", "failed")


def _same_config(run: Run, cfg: Config) -> bool:
    canon = lambda d: json.dumps(d, sort_keys=True, default=str)
    saved = run.raw_config()
    return saved is not None and canon(saved) == canon(cfg.to_dict())


def _same_code(run: Run, cfg: Config) -> bool:
    """The run used the user code (files and their hashes) that this config imports now."""
    return record.fingerprint(run.code_manifest() or {}) == record.fingerprint(record.snapshot(cfg))


def previous(run_dir: Path, cfg: Config) -> str:
    """What an earlier attempt left in run_dir: 'finished', 'resumable' or 'none' (also when the
    user's own code changed since: the run is trained again with the code as it is now)."""
    run = Run(run_dir)
    if not run_dir.is_dir() or not _same_config(run, cfg) or not _same_code(run, cfg):
        return "none"
    summary = run.summary_or_none()
    if summary is not None and summary.get("status") in FINISHED:
        return "finished"
    return "resumable" if run.resumable() else "none"


def run_unit(cfg: Config, run_dir: Path, callbacks: list[Callback]) -> dict[str, Any]:
    """Train one run into run_dir (resuming or reusing an earlier attempt); return its row. The
    runs of one worker share their dataset and samples.png, and each draws curves.png once, at its
    end (training/shared.py): the same metrics and checkpoints as the run trained alone."""
    state = previous(run_dir, cfg)
    status, reason = None, None
    try:
        if state == "resumable":
            runner.resume(run_dir, quiet=True, callbacks=callbacks, shared=True)
        elif state == "none":
            if run_dir.exists():
                shutil.rmtree(run_dir)  # a different config or an attempt that left nothing usable
            runner.train(cfg, run_dir=run_dir, quiet=True, callbacks=callbacks, shared=True)
    except DivergedError as e:
        status, reason = "diverged", str(e)
    except UserError as e:  # e.g. a model that cannot take this input size
        status, reason = "failed", str(e)
    except Exception as e:
        status, reason = "failed", f"{type(e).__name__}: {e}"
        if run_dir.is_dir():
            Run(run_dir).write_traceback(traceback.format_exc())
    run = Run(run_dir)
    row = make_row(run.summary_or_none() if run_dir.is_dir() else None, run.history)
    if status is not None:
        row["status"], row["reason"] = status, reason
    row["reused"] = state == "finished"
    row["threads"] = torch.get_num_threads()
    return row


def make_row(summary: dict[str, Any] | None, history: list[dict[str, Any]]) -> dict[str, Any]:
    """Status and metrics of a run: at the selected epoch, the last epoch and the best epochs."""
    if summary is None:
        return {"status": "failed", "reason": "the run did not start", "history": []}
    hist = [h for h in history if h.get("epoch", 0) <= summary.get("epochs", 0)]
    row: dict[str, Any] = {"status": summary.get("status"), "reason": summary.get("reason"),
                           "epochs": summary.get("epochs"), "best_epoch": summary.get("best_epoch")}
    selected = next((h for h in hist if h["epoch"] == summary.get("best_epoch")), None)
    final = hist[-1] if hist else (summary.get("final") or {})
    for split in SPLITS:
        for kind in KINDS:
            name = f"{split}_{kind}"
            if selected is not None and name in selected:
                row[name] = selected[name]
            if name in final:
                row[f"final_{name}"] = final[name]
            best = (summary.get("best") or {}).get(name)
            if best is not None:
                row[f"best_{name}"], row[f"best_{name}_epoch"] = best["value"], best["epoch"]
    row["params"] = summary.get("params")
    row["wall_seconds"] = summary.get("wall_seconds")
    row["host"] = HOST.split(":")[0]
    row["history"] = [{k: h[k] for k in ("epoch", *HISTORY_KEYS) if k in h} for h in hist]
    return row
