"""Run directories: the unit every other command reads.

runs/<name>-<timestamp>/
  config.yaml     resolved config (every default filled in)
  data.json       classes, label values, input shape, normalisation: what predict needs
  metrics.jsonl   one object per epoch
  summary.json    headline numbers, status, versions, device, git commit
  best.pt last.pt checkpoints (weights_only loadable)
  curves.png      loss per step, accuracy per epoch
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from cnnlab.config import Config, resolve
from cnnlab.errors import UserError
from cnnlab.io import write_json, write_text


def create(out_dir: str | Path, name: str) -> Path:
    """A new, empty run directory named after the run and the current time."""
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(1000):
        path = out / (f"{name}-{stamp}" if k == 0 else f"{name}-{stamp}-{k}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise UserError(f"{out}: cannot create a new run directory")


def write_config(run_dir: Path, cfg: Config) -> None:
    """Save the resolved config as YAML."""
    write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def read_config(run_dir: Path) -> Config:
    """The resolved config of a run, validated again (the code may have changed since)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise UserError(f"{run_dir}: not a run directory (no config.yaml); pass the folder `cnnlab train` printed")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        raise UserError(f"{path}: damaged config; this run cannot be read") from None
    try:
        return resolve(raw)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file of a run directory, or a UserError saying which one is missing."""
    if not path.is_file():
        raise UserError(f"{path}: missing; is {path.parent} a complete run directory?")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise UserError(f"{path}: damaged JSON") from None


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    """Write summary.json atomically."""
    write_json(run_dir / "summary.json", summary)


def environment() -> dict[str, Any]:
    """Library versions and the git commit of the working directory, when there is one."""
    import numpy
    import torch
    import torchvision

    import cnnlab

    return {
        "versions": {
            "cnnlab": cnnlab.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__,
        },
        "git_commit": _git_commit(),
        "host": platform.node(),
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
