"""Checkpoint files of both engines: a payload (a dict of plain data and arrays) <-> one file.

`torch` files (.pt) hold tensors and plain data only, so they load with
torch.load(weights_only=True). `npz` files (.npz, the NumPy engine's) hold arrays only and
load with allow_pickle=False: the weights and optimizer arrays under "model/..." and
"optim/...", the random generators' states under "rng/...", and everything else as JSON
text ("meta" for what explains the file, "state" for what resuming needs). Both are written
atomically. Only cnnlab/rundir.py calls this module; it decides the file names.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.errors import UserError
from cnnlab.io import atomic_path
from cnnlab.lazy import lazy

torch = lazy("torch")

TORCH_FORMAT = "cnnlab-checkpoint/1"
NPZ_FORMAT = "cnnlab-scratch-checkpoint/1"
_META = ("engine", "config", "data", "epoch", "metrics")  # what a checkpoint says about itself
_ARRAY_GROUPS = ("model", "optim", "rng")  # npz: name -> array mappings, stored as "group/name"


def save(path: Path, payload: dict[str, Any], fmt: str) -> None:
    """Write `payload` as a `fmt` ("torch" or "npz") checkpoint; a crash mid-write keeps the old file."""
    if fmt == "torch":
        data = {"format": TORCH_FORMAT, **payload}
        if "step_losses" in data:
            data["step_losses"] = torch.tensor(data["step_losses"], dtype=torch.float32)
        with atomic_path(path) as tmp:
            try:
                torch.save(data, tmp)
            except RuntimeError as e:  # torch's writer reports a failed write as "[enforce fail ...] file write failed"
                raise OSError(errno.EIO, str(e).splitlines()[0][:100]) from None
        return
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"format": NPZ_FORMAT}
    state: dict[str, Any] = {}
    for key, value in payload.items():
        if key in _ARRAY_GROUPS:
            arrays.update({f"{key}/{k}": _array(v) for k, v in value.items()})
        else:
            (meta if key in _META else state)[key] = value
    arrays["meta"] = np.asarray(json.dumps(meta))  # 0-d unicode arrays: text without pickling
    if state:
        arrays["state"] = np.asarray(json.dumps(state))
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def load(path: Path, device: Any = "cpu") -> dict[str, Any]:
    """The payload of a checkpoint of either format (by its suffix); a damaged file is a UserError."""
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    return _load_npz(path) if path.suffix == ".npz" else _load_torch(path, device)


def _load_torch(path: Path, device: Any) -> dict[str, Any]:
    try:
        data = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # torch raises many types for damaged files
        raise UserError(f"{path}: unreadable checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if not isinstance(data, dict) or data.get("format") != TORCH_FORMAT:
        raise UserError(f"{path}: not a cnnlab checkpoint")
    if "step_losses" in data:
        data["step_losses"] = data["step_losses"].tolist()
    return data


def _load_npz(path: Path) -> dict[str, Any]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("meta")))
        state = json.loads(str(arrays.pop("state"))) if "state" in arrays else {}
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    if meta.pop("format", None) != NPZ_FORMAT:
        raise UserError(f"{path}: not a cnnlab NumPy-engine checkpoint")
    payload: dict[str, Any] = {**meta, **state}
    for group in _ARRAY_GROUPS:
        start = group + "/"
        found = {k[len(start):]: v for k, v in arrays.items() if k.startswith(start)}
        if found:
            payload[group] = found
    if "data_rng" in arrays:  # written by cnnlab 0.1: the data generator's state only
        payload["rng"] = {"data": arrays["data_rng"]}
    return payload


def _array(value: Any) -> np.ndarray:
    """An array of a tensor (generator states) or of anything NumPy takes."""
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)
