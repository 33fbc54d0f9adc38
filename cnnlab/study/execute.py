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
import yaml

from cnnlab.config import Config
from cnnlab.errors import DivergedError, UserError
from cnnlab.io import write_text
from cnnlab.study.lease import HOST
from cnnlab.train.trainer import Callback

SPLITS = ("train", "val", "test")
KINDS = ("loss", "acc", "top5")
HISTORY_KEYS = tuple(f"{s}_{k}" for s in SPLITS for k in ("loss", "acc"))
FINISHED = ("completed", "early_stopped", "pruned", "diverged", "failed")


def _same_config(run_dir: Path, cfg: Config) -> bool:
    try:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    canon = lambda d: json.dumps(d, sort_keys=True, default=str)
    return canon(saved) == canon(cfg.to_dict())


def _read_summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def previous(run_dir: Path, cfg: Config) -> str:
    """What an earlier attempt left in run_dir: 'finished', 'resumable' or 'none'."""
    if not run_dir.is_dir() or not _same_config(run_dir, cfg):
        return "none"
    summary = _read_summary(run_dir)
    if summary is not None and summary.get("status") in FINISHED:
        return "finished"
    last = (run_dir / "last.pt").is_file() or (run_dir / "last.npz").is_file()  # torch or NumPy engine
    if last and (run_dir / "data.json").is_file():
        return "resumable"
    return "none"


def run_unit(cfg: Config, run_dir: Path, callbacks: list[Callback]) -> dict[str, Any]:
    """Train one run into run_dir (resuming or reusing an earlier attempt); return its row."""
    from cnnlab.train import runner

    state = previous(run_dir, cfg)
    status, reason = None, None
    try:
        if state == "resumable":
            runner.resume(run_dir, quiet=True, callbacks=callbacks)
        elif state == "none":
            if run_dir.exists():
                shutil.rmtree(run_dir)  # a different config or an attempt that left nothing usable
            runner.train(cfg, run_dir=run_dir, quiet=True, callbacks=callbacks)
    except DivergedError as e:
        status, reason = "diverged", str(e)
    except UserError as e:  # e.g. a model that cannot take this input size
        status, reason = "failed", str(e)
    except Exception as e:
        status, reason = "failed", f"{type(e).__name__}: {e}"
        if run_dir.is_dir():
            write_text(run_dir / "traceback.txt", traceback.format_exc())
    summary = _read_summary(run_dir) if run_dir.is_dir() else None
    row = make_row(summary, _history(run_dir))
    if status is not None:
        row["status"], row["reason"] = status, reason
    row["reused"] = state == "finished"
    row["threads"] = torch.get_num_threads()
    return row


def _history(run_dir: Path) -> list[dict[str, Any]]:
    try:
        lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    except (OSError, json.JSONDecodeError):
        return []


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
