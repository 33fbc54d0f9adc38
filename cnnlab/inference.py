"""A trained model back from its run directory, for evaluate and predict (either engine)."""

from __future__ import annotations

from typing import Any, Literal

import torch

from cnnlab.config import Config
from cnnlab.device import resolve_device
from cnnlab.errors import UserError
from cnnlab.models import build_model
from cnnlab.reopen import run_config
from cnnlab.rundir import Run
from cnnlab.training.engines import engine_type


def model_device(model: Any) -> torch.device:
    """Where a loaded model runs (the NumPy engine: the CPU)."""
    params = getattr(model, "parameters", None)
    return next(params()).device if params is not None else torch.device("cpu")


def load_run_model(run: Run, which: Literal["best", "last"] = "best") -> tuple[Config, dict[str, Any], Any, dict]:
    """(config, data info, model in eval mode on the run's device with the checkpoint's weights, checkpoint)."""
    cfg = run_config(run.check())
    info = run.data_info
    payload = run.checkpoint(which)
    kind = engine_type(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, tuple(info["input_shape"]), len(info["classes"]))
    try:
        model = kind.inference_model(cfg, model, payload["model"], resolve_device(kind.device(cfg)))
    except RuntimeError as e:
        raise UserError(f"{run.checkpoint_path(which)}: weights do not fit the model in config.yaml "
                        f"({str(e).splitlines()[0]})") from None
    return cfg, info, model, payload


def load_torch_model(run: Run, which: Literal["best", "last"] = "best") -> tuple[Config, dict[str, Any], torch.nn.Module, dict]:
    """Like load_run_model, but always the torch module config.yaml builds, on the CPU, in eval mode
    (a NumPy-engine run's weights are put back into it): what export and the analyses work on."""
    cfg = run_config(run.check())
    info = run.data_info
    payload = run.checkpoint(which)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, tuple(info["input_shape"]), len(info["classes"]))
    try:
        model = engine_type(cfg).torch_model(cfg, model, payload["model"], torch.device("cpu"))
    except RuntimeError as e:
        raise UserError(f"{run.checkpoint_path(which)}: weights do not fit the model in config.yaml "
                        f"({str(e).splitlines()[0]})") from None
    return cfg, info, model, payload
