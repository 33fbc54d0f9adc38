"""model.init_from: start a network from another run's weights (or a weights file) instead of random
ones. Every tensor whose name and shape match is copied; a tensor whose shape differs (the head,
for a dataset with other classes) keeps its fresh initialisation, and so does every tensor the
source does not have. What was loaded, skipped and left new is reported, with the SHA-256 of the
file the weights came from, so a run (and its report) says where its start came from.

Sources: a cnnlab run directory (its best checkpoint, either engine), a cnnlab checkpoint
(.pt/.npz), or a plain state dict in a .pt/.pth/.bin file (loaded with weights_only=True) or a
.safetensors file. Prefixes added by DataParallel/DDP (`module.`) and torch.compile
(`_orig_mod.`) are dropped.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab import checkpoints
from cnnlab.errors import ConfigError, UserError
from cnnlab.lazy import lazy
from cnnlab.rundir import Run

torch = lazy("torch")

PREFIXES = ("module.", "_orig_mod.")
SUFFIXES = (".pt", ".pth", ".bin", ".npz", ".safetensors")


def source_file(source: str) -> Path:
    """The weights file `source` names: a run directory's best checkpoint, or the file itself."""
    path = Path(source).expanduser()
    if path.is_dir():
        best = Run(path).checkpoint_path("best")  # either engine's
        if best is None:
            raise ConfigError(f"model.init_from: {path} holds no best checkpoint; give a cnnlab run directory that "
                              "finished an epoch, or a weights file")
        return best
    if not path.is_file():
        raise ConfigError(f"model.init_from: {path}: no such run directory or weights file")
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"model.init_from: {path}: not a weights file ({', '.join(SUFFIXES)}) or a run directory")
    return path


def read_weights(path: Path) -> dict[str, Any]:
    """name -> tensor from any supported file, with wrapper prefixes dropped."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            try:
                from safetensors.torch import load_file
            except ImportError:
                raise ConfigError(f"model.init_from: {path}: reading .safetensors needs the safetensors package "
                                  "(pip install safetensors)") from None
            weights = load_file(str(path))
        elif suffix == ".npz":
            weights = checkpoints.load(path)["model"]
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(data, dict) and data.get("format") == checkpoints.TORCH_FORMAT:
                data = data["model"]  # a cnnlab checkpoint
            elif isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
                data = data["state_dict"]  # a common training-script layout
            weights = data
    except (ConfigError, UserError):
        raise
    except Exception as e:  # torch and safetensors raise many types for damaged or foreign files
        raise ConfigError(f"model.init_from: {path}: unreadable ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if not isinstance(weights, dict) or not weights:
        raise ConfigError(f"model.init_from: {path}: holds no named tensors (a state dict) to start from")
    out = {}
    for name, value in weights.items():
        for prefix in PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix):]
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        if isinstance(value, torch.Tensor):
            out[name] = value
    return out


def initialise(model: Any, source: str) -> dict[str, Any]:
    """Copy what fits from `source` into `model` (in place); the report of what happened."""
    path = source_file(source)
    weights = read_weights(path)
    own = model.state_dict()
    loaded = [k for k, v in own.items() if k in weights and tuple(weights[k].shape) == tuple(v.shape)]
    skipped = [f"{k} {list(weights[k].shape)} -> {list(v.shape)}" for k, v in own.items()
               if k in weights and tuple(weights[k].shape) != tuple(v.shape)]
    new = [k for k in own if k not in weights]
    if not loaded:
        raise ConfigError(f"model.init_from: none of the {len(weights)} tensors in {path} fits this model by name and "
                          f"shape (it has e.g. {next(iter(weights))}, the model {next(iter(own))}); is it the same "
                          "architecture?")
    with torch.no_grad():
        for k in loaded:
            own[k].copy_(weights[k].to(own[k].dtype))
    return {"source": str(source), "file": str(path.resolve()), "sha256": _sha256(path), "loaded": len(loaded),
            "skipped": skipped, "new": new, "unused": sorted(set(weights) - set(own))}


def describe(report: dict[str, Any]) -> str:
    """One line for the banner and the report."""
    parts = [f"{report['loaded']} tensors loaded"]
    if report["skipped"]:
        parts.append(f"{len(report['skipped'])} skipped, shape differs ({'; '.join(report['skipped'][:3])}"
                     f"{'; ...' if len(report['skipped']) > 3 else ''})")
    if report["new"]:
        parts.append(f"{len(report['new'])} new ({', '.join(report['new'][:3])}{', ...' if len(report['new']) > 3 else ''})")
    if report["unused"]:
        parts.append(f"{len(report['unused'])} of the source's unused")
    return f"weights from {report['source']} (sha256 {report['sha256'][:12]}): " + ", ".join(parts)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
