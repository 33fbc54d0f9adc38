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


def read_weights(path: Path, key: str = "model.init_from") -> dict[str, Any]:
    """name -> tensor from any supported file, with wrapper prefixes dropped (`key`: the config key
    its errors name)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            try:
                from safetensors.torch import load_file
            except ImportError:
                raise ConfigError(f"{key}: {path}: reading .safetensors needs the safetensors package "
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
        raise ConfigError(f"{key}: {path}: unreadable ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if not isinstance(weights, dict) or not weights:
        raise ConfigError(f"{key}: {path}: holds no named tensors (a state dict) to start from")
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


def initialise(model: Any, source: str, head: str = "keep") -> dict[str, Any]:
    """Copy what fits from `source` into `model` (in place); the report of what happened. `head`: new
    leaves the head's tensors out (model.init_head), so it keeps its fresh initialisation."""
    path = source_file(source)
    weights = read_weights(path)
    if head == "new":
        from cnnlab.models.freezing import head_parameters

        if not hasattr(model, "named_modules"):
            raise ConfigError("model.init_head: new needs the torch engine (engine: torch)")
        drop = set(head_parameters(model, "model.init_head"))
        weights = {k: v for k, v in weights.items() if k not in drop}
    return copy_matching(model, weights, path, str(source), "model.init_from")


def copy_matching(model: Any, weights: dict[str, Any], path: Path, source: str, key: str) -> dict[str, Any]:
    """Copy every tensor of `weights` whose name and shape match into `model`; the report."""
    own = model.state_dict()
    loaded = [k for k, v in own.items() if k in weights and tuple(weights[k].shape) == tuple(v.shape)]
    if not loaded:
        raise ConfigError(f"{key}: none of the {len(weights)} tensors in {path} fits this model by name and "
                          f"shape (it has e.g. {next(iter(weights))}, the model {next(iter(own))}); is it the same "
                          "architecture?")
    with torch.no_grad():
        for k in loaded:
            own[k].copy_(weights[k].to(own[k].dtype))
    skipped = [k for k, v in own.items() if k in weights and tuple(weights[k].shape) != tuple(v.shape)]
    return file_report(path, source, loaded, [], [k for k in own if k not in loaded], sorted(set(weights) - set(own)),
                       {k: (list(weights[k].shape), list(own[k].shape)) for k in skipped})


def file_report(path: Path, source: str, loaded: list[str], adapted: list[str], new: list[str],
                unused: list[str], shapes: dict[str, tuple[list[int], list[int]]] | None = None) -> dict[str, Any]:
    """What a run's starting weights are: the file and its SHA-256, the tensors loaded, adapted
    (copied after a change of shape, e.g. a first conv summed for grayscale input), skipped (a
    shape that differs: the head) and left new."""
    shapes = shapes or {}
    return {"source": source, "file": str(path.resolve()), "sha256": _sha256(path), "loaded": len(loaded),
            "adapted": adapted, "skipped": [f"{k} {a} -> {b}" for k, (a, b) in shapes.items()],
            "new": [k for k in new if k not in shapes], "unused": unused}


def describe(report: dict[str, Any]) -> str:
    """One line for the banner and the report."""
    parts = [f"{report['loaded']} tensors loaded"]
    if report.get("adapted"):
        parts.append(f"{len(report['adapted'])} adapted ({', '.join(report['adapted'][:3])})")
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
