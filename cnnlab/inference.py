"""Loading a trained model back from its run directory, for evaluate and predict."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from cnnlab import rundir
from cnnlab.config import Config
from cnnlab.device import resolve_device
from cnnlab.errors import UserError
from cnnlab.models import build_model
from cnnlab.train import checkpoint


def model_device(model: Any) -> torch.device:
    """Where a loaded model runs (the NumPy engine: the CPU)."""
    params = getattr(model, "parameters", None)
    return next(params()).device if params is not None else torch.device("cpu")


def _load_scratch(cfg: Config, info: dict[str, Any], path: Path) -> tuple[Any, dict]:
    """The NumPy engine's network with a checkpoint's weights, and the checkpoint's metadata."""
    import numpy as np

    from cnnlab.train import scratch_engine as se

    if not path.is_file():
        raise UserError(f"{path}: not found; the run has not finished an epoch yet (try `cnnlab resume {path.parent}`)")
    arrays = se.read_checkpoint(path)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model.name, cfg.options("model", "name"), tuple(info["input_shape"]), len(info["classes"]))
    net, _ = se.convert(model, np.random.default_rng(cfg.seed))
    se.load_weights(net, arrays, path)
    return se.ScratchModel(net).eval(), se.checkpoint_meta(arrays)


def load_run_model(run_dir: Path, which: Literal["best", "last"] = "best") -> tuple[Config, dict[str, Any], nn.Module, dict]:
    """(config, data info, model in eval mode on the run's device with the checkpoint's weights, checkpoint)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    cfg = rundir.read_config(run_dir)
    info = rundir.read_json(run_dir / "data.json")
    if cfg.engine == "scratch":
        return (cfg, info, *_load_scratch(cfg, info, run_dir / f"{which}.npz"))
    path = run_dir / f"{which}.pt"
    if not path.is_file():
        raise UserError(f"{path}: not found; the run has not finished an epoch yet (try `cnnlab resume {run_dir}`)")
    ckpt = checkpoint.load(path)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model.name, cfg.options("model", "name"), tuple(info["input_shape"]), len(info["classes"]))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise UserError(f"{path}: weights do not fit the model in config.yaml ({str(e).splitlines()[0]})") from None
    return cfg, info, model.to(resolve_device(cfg.device)).eval(), ckpt
