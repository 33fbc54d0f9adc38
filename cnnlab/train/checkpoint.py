"""Checkpoints: tensors and plain data only, so they load with torch.load(weights_only=True)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import UserError
from cnnlab.io import atomic_path

FORMAT = "cnnlab-checkpoint/1"


def save(path: Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically: a crash mid-write leaves the previous one intact."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)


def load(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (weights_only=True); a damaged file is a UserError."""
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        data = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # torch raises many types for damaged files
        raise UserError(f"{path}: unreadable checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{path}: not a cnnlab checkpoint")
    return data
