"""`cnnlab export`: a trained run's network as ONNX or TorchScript, for use outside cnnlab.

The exported model takes float32 images in [0, 1], N x C x H x W at the run's input shape
(raw 8-bit pixels divided by 255; the run's `scale` in general), and returns logits. The
training normalisation ((x - mean) / std with the training split's statistics) is folded into
it, and so is the run's test-time augmentation (train.tta: hflip), so its logits are the ones
`cnnlab evaluate` scores. Ops that resize (resize, center_crop in augment:) are not part of it:
the JSON beside the model lists them, with the class names, the input's description and the
parity check.

Parity: the exported file is loaded back (onnxruntime, torch.jit) and run on real images of
the run's own data (test split, else val, else train); its logits are compared with the run's
model as cnnlab evaluates it (the NumPy engine's own forward pass for engine: scratch runs).
The export is refused, and nothing is left behind, when the largest logit difference exceeds
the tolerance or any predicted class differs.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from cnnlab.data.batches.memory import normalise
from cnnlab.errors import UserError
from cnnlab.io import atomic_path, write_json
from cnnlab.reopen import open_run
from cnnlab.training.tta import with_tta

FORMATS = ("onnx", "torchscript")
PARITY_IMAGES = 256
# Largest |logit difference| accepted, relative to the largest |logit| (at least 1): float32
# kernels of onnxruntime and torch differ in rounding, around 1e-6 of the logits' size.
TOLERANCE = 1e-3


class Exported(nn.Module):
    """[0, 1] images in, logits out: the run's normalisation, network and test-time augmentation."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float], tta: Literal["none", "hflip"],
                 temperature: float = 1.0):
        super().__init__()
        c = len(mean)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1))
        self.model, self.flip, self.temperature = model, tta == "hflip", float(temperature)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean) / self.std
        if not self.flip:
            logits = self.model(x)
        else:
            # tta.FlipTTA's mean of the logits of an image and its mirror, as two passes: its single
            # pass over a concatenated batch pins the exported batch size to the example's.
            logits = (self.model(x) + self.model(x.flip(3))) / 2
        return logits if self.temperature == 1.0 else logits / self.temperature


@dataclass
class Parity:
    images: int
    split: str
    max_abs_diff: float
    max_abs_logit: float
    agree: int
    runtime: str

    @property
    def ok(self) -> bool:
        return self.agree == self.images and self.max_abs_diff <= TOLERANCE * max(1.0, self.max_abs_logit)

    def line(self) -> str:
        return (f"parity on {self.images} {self.split} images ({self.runtime}): max |logit difference| "
                f"{self.max_abs_diff:.3g} (largest |logit| {self.max_abs_logit:.3g}), same class for {self.agree}/{self.images}")


def export_run(run_dir: Path, fmt: str, which: Literal["best", "last"] = "best") -> tuple[Path, Path, Parity]:
    """Write the exported model and its JSON into the run (export/); (model file, JSON, parity)."""
    if fmt not in FORMATS:
        raise UserError(f"--format: '{fmt}' is not one of {', '.join(FORMATS)}")
    opened = open_run(run_dir, which)
    run, cfg, info, payload = opened.run, opened.cfg, opened.info, opened.payload
    reference = opened.model()  # what evaluate scores (either engine)
    net = opened.model(torch_module=True)  # the same weights in the torch module config.yaml builds
    t = opened.temperature  # `cnnlab calibrate`'s, folded in like the normalisation
    model = Exported(net, info["mean"], info["std"], cfg.train.tta, t).eval()
    images, split = _real_images(opened)
    with torch.inference_mode():
        x = normalise(images, model.mean, model.std, False)
        expected = with_tta(reference, cfg.train.tta)(x).float() / t
    target = run.export_file(which, fmt)
    with atomic_path(target) as tmp:
        try:
            got, runtime = (_onnx(model, images, tmp) if fmt == "onnx" else _torchscript(model, images, tmp))
        except Exception as e:  # the exporters and runtimes raise many types, with long messages
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise UserError(f"{run.path}: exporting to {fmt} failed, or the exported model does not run on "
                            f"{len(images)} real images ({type(e).__name__}: {first}); nothing was written") from None
        parity = Parity(len(images), split, float((got - expected).abs().max()), float(expected.abs().max()),
                        int((got.argmax(1) == expected.argmax(1)).sum()), runtime)
        if not parity.ok:  # leaving the block by an exception removes the temporary file
            raise UserError(f"{run.path}: the exported {fmt} model disagrees with the run's model ({parity.line()}; "
                            f"tolerance {TOLERANCE:g} x the largest logit); nothing was written")
    sidecar = run.export_info_file(which, fmt)
    write_json(sidecar, describe(cfg, info, payload, which, fmt, target, parity, t))
    return target, sidecar, parity


def describe(cfg: Any, info: dict[str, Any], payload: dict[str, Any], which: str, fmt: str, target: Path,
             parity: Parity, temperature: float = 1.0) -> dict[str, Any]:
    """The JSON beside an exported model: what goes in, what comes out, and the classes."""
    c, h, w = info["input_shape"]
    resizing = [op for op in cfg.augment if next(iter(op)) in ("resize", "center_crop")]
    return {
        "file": target.name, "format": fmt, "checkpoint": which, "epoch": payload.get("epoch"),
        "engine": cfg.engine, "model": cfg.model.name,
        "input": {"name": "images", "dtype": "float32", "layout": "NCHW", "shape": ["batch", c, h, w],
                  "range": [0.0, 1.0], "scale": info.get("scale"),
                  "meaning": f"raw pixel values times scale ({info.get('scale')}: 1/255 for 8-bit images), "
                             "not normalised: the normalisation below is inside the model"},
        "folded_in": {"normalisation": {"mean": info["mean"], "std": info["std"]}, "tta": cfg.train.tta,
                      "temperature": temperature},
        "apply_before": resizing,  # the run's resize/center_crop ops, not part of the exported model
        "output": {"name": "logits", "shape": ["batch", len(info["classes"])],
                   "meaning": "unnormalised class scores (already divided by the temperature above); softmax "
                              "gives probabilities, argmax the class"},
        "classes": info["classes"], "label_values": info["label_values"],
        "parity": {**parity.__dict__, "tolerance": TOLERANCE},
    }


def _real_images(opened: Any) -> tuple[torch.Tensor, str]:
    """Up to PARITY_IMAGES images of the run's data in [0, 1], as the model's input (after resize ops)."""
    split, data = opened.split()
    # The loader's own decoding and resize ops, without its normalisation: the exported model has it.
    loader = opened.loader(data, PARITY_IMAGES, normalise=False, workers=0)
    x, _ = next(iter(loader))
    return x.contiguous(), split


def _onnx(model: nn.Module, images: torch.Tensor, path: Path) -> tuple[torch.Tensor, str]:
    import onnxruntime

    batch = torch.export.Dim("batch", min=1)
    with _quiet():
        program = torch.onnx.export(model, (images[:2],), input_names=["images"], output_names=["logits"],
                                    dynamic_shapes=({0: batch},), dynamo=True, verbose=False)
        program.save(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(["logits"], {"images": images.numpy()})[0]
    return torch.from_numpy(out).float(), f"onnxruntime {onnxruntime.__version__}"


def _torchscript(model: nn.Module, images: torch.Tensor, path: Path) -> tuple[torch.Tensor, str]:
    with _quiet():  # torch.jit is deprecated in favour of torch.export, but still what many tools load
        traced = torch.jit.trace(model, images[:2])
        traced.save(str(path))
        loaded = torch.jit.load(str(path), map_location="cpu")
        with torch.inference_mode():
            out = loaded(images)
    return out.float(), f"torch.jit {torch.__version__}"


@contextlib.contextmanager
def _quiet():
    """The exporters' progress prints and deprecation warnings: not the user's concern."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield
