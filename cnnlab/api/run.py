"""`cnnlab.Run`: any run directory, opened from Python.

    run = cnnlab.Run("runs/fashion_mnist_cnn-20261207-101500")
    run.summary["test_acc"], run.history.tail(), run.config.optim.lr
    net = run.model()                      # the trained nn.Module, on the CPU, in eval mode
    run.predict("new_images/")             # a DataFrame: image_id, label, probability
    run.evaluate("test")                   # loss, accuracy, top-5, per-class accuracy, confusion
    run.plot()                             # the curves figure; a notebook shows the run itself as HTML

A run trained on a model or dataset handed over from Python (a class defined in a notebook, an
instance, a Dataset) cannot rebuild it in another process: pass it again (`run.model(model=Net)`,
`run.evaluate(data=dataset)`). `code=` says which of the run's own files to use when they changed
since (check, stored, current: see cnnlab/usercode/record.py).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Literal

from cnnlab.errors import UserError
from cnnlab.rundir import Run as RunFiles
from cnnlab.usercode import live

Checkpoint = Literal["best", "last"]


class Run:
    """A run directory, as a Python object (see the module docstring)."""

    def __init__(self, path: str | Path, *, code: str | None = None):
        self.files = RunFiles(Path(getattr(path, "path", path))).check()
        self.path = self.files.path
        self.code = code

    def __repr__(self) -> str:
        return f"cnnlab.Run({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    # ------------------------------------------------------------------ numbers

    @property
    def summary(self) -> dict[str, Any]:
        """summary.json: status, the best epoch's val/test accuracy, bests, provenance."""
        return self.files.summary_if_written() or {"status": "not started"}

    @property
    def status(self) -> str:
        return str(self.summary.get("status"))

    @property
    def history(self) -> Any:
        """metrics.jsonl as a pandas DataFrame, one row per epoch."""
        import pandas as pd

        return pd.DataFrame(self.files.history)

    @property
    def steps(self) -> Any:
        """steps.csv as a pandas DataFrame: step, epoch, train_loss."""
        import pandas as pd

        losses = self.files.steps()
        per = max(1, len(losses) // max(1, len(self.files.history))) if losses else 1
        return pd.DataFrame({"step": range(1, len(losses) + 1),
                             "epoch": [(i // per) + 1 for i in range(len(losses))], "train_loss": losses})

    @property
    def config(self) -> Any:
        """The resolved Config (with the run's own code imported again)."""
        from cnnlab.reopen import open_run

        return open_run(self.files, None, self.code).cfg  # type: ignore[arg-type]

    @property
    def raw_config(self) -> dict[str, Any]:
        """config.yaml as plain data (no code imported)."""
        return self.files.config_raw()

    @property
    def code_files(self) -> dict[str, Any] | None:
        """code.json: the user files and modules the run used, their hashes and stored copies."""
        return self.files.code_manifest()

    # ------------------------------------------------------------------ the trained model

    def model(self, checkpoint: Checkpoint = "best", *, model: Any = None) -> Any:
        """The trained network (a torch nn.Module, on the CPU, eval mode, the checkpoint's weights).
        `model`: the class or instance it was trained from, when that came from Python."""
        from cnnlab.reopen import open_run

        self._bind(model=model)
        return open_run(self.files, checkpoint, self.code).model(torch_module=True)  # type: ignore[arg-type]

    def predict(self, images: Any, checkpoint: Checkpoint = "best", *, model: Any = None) -> Any:
        """Predictions as a DataFrame (image_id, label, probability): for a path (a .npy, a pixel
        .csv, a folder or .zip of images, as `cnnlab predict` reads), or images in memory (an
        N x C x H x W or N x H x W [x C] array or tensor, uint8 0..255 or floats 0..1, or a list of
        PIL images) shaped like the run's training images."""
        import pandas as pd
        import torch

        from cnnlab.predict import probabilities, read_inputs

        self._bind(model=model)
        info = self.files.data_info
        if isinstance(images, (str, Path)):
            ids, x = read_inputs(Path(images), info)
        else:
            x = _as_images(images, info)
            ids = [str(i) for i in range(len(x))]
        probs = probabilities(self.files, x, checkpoint)
        best = probs.max(1)
        values = info["label_values"]
        return pd.DataFrame({"image_id": ids, "label": [values[k] for k in best.indices.tolist()],
                             "class": [info["classes"][k] for k in best.indices.tolist()],
                             "probability": best.values.to(torch.float64).numpy()})

    def evaluate(self, split: str | None = None, checkpoint: Checkpoint = "best", *, model: Any = None,
                 data: Any = None) -> dict[str, Any]:
        """Loss, accuracy, top-5, per-class accuracy, confusion matrix and calibration (ECE, NLL,
        Brier) of a split (default: test, else val), as `cnnlab evaluate` writes them into the run."""
        from cnnlab.evaluate import evaluate_run

        self._bind(model=model, data=data)
        self._code()
        return evaluate_run(self.path, split, checkpoint)

    def calibrate(self, checkpoint: Checkpoint = "best", *, model: Any = None, data: Any = None) -> dict[str, Any]:
        """Fit a temperature on the validation split and store it in the run (as `cnnlab calibrate`):
        {temperature, split, images, epoch, before: {ece, nll, brier}, after: {...}}."""
        from cnnlab.calibrate import calibrate_run

        self._bind(model=model, data=data)
        self._code()
        return calibrate_run(self.path, checkpoint)

    def _code(self) -> None:
        if self.code is not None:
            from cnnlab.usercode.record import set_policy

            set_policy(self.code)  # type: ignore[arg-type]

    def _bind(self, model: Any = None, data: Any = None) -> None:
        self._code()
        bind_objects(self.path, model=model, data=data)

    # ------------------------------------------------------------------ more

    def plot(self) -> Any:
        """The curves figure (training loss per step, accuracy per epoch) as a matplotlib Figure."""
        import matplotlib.pyplot as plt

        from cnnlab.plots.curves import curves_figure

        history = self.files.history
        steps = self.files.steps()
        per = len(steps) // len(history) if history and steps else 1
        fig = curves_figure(history, steps, per, title=self.name)
        plt.close(fig)  # shown once, by the notebook's display of the returned figure
        return fig

    def resume(self, *, callbacks: list[Any] | None = None, quiet: bool = False, progress: bool | None = None,
               model: Any = None, data: Any = None) -> Run:
        """Continue an interrupted run from its last checkpoint. `callbacks`: the Python callbacks it had
        (they are not stored); `model`, `data`: the objects it was trained with, when they came from
        Python and cannot be imported again."""
        from cnnlab.training.runner import resume as run_resume

        self._bind(model=model, data=data)
        result = run_resume(self.path, quiet=quiet, callbacks=list(callbacks or []), progress=progress,
                            code=self.code)  # type: ignore[arg-type]
        return Run(result.run_dir, code=self.code)

    def analyze(self, what: str, checkpoint: Checkpoint = "best", **options: Any) -> list[str]:
        """One analysis (kernels, features, errors, cam, landscape, or your own); see cnnlab.analyze."""
        from cnnlab.api.studies import analyze

        self._code()
        return analyze(self, what, checkpoint=checkpoint, **options)

    def report(self, out: str | Path | None = None, format: str = "html") -> Path:
        """The run's report (one self-contained HTML file, or Markdown); returns its path."""
        from cnnlab.api.studies import report

        self._code()
        return report(self, out=out, format=format)

    def export(self, format: str = "onnx", checkpoint: Checkpoint = "best") -> Path:
        """The model as ONNX or TorchScript in RUN/export/ (see `cnnlab export`); returns the file."""
        from cnnlab.export import export_run

        self._code()
        if format not in ("onnx", "torchscript"):
            raise UserError(f"format: '{format}' is not one of onnx, torchscript")
        return export_run(self.path, format, checkpoint)[0]

    # ------------------------------------------------------------------ notebooks

    def _repr_html_(self) -> str:
        s = self.summary
        rows = [("status", s.get("status"))]
        if s.get("reason"):
            rows.append(("reason", s.get("reason")))
        for key in ("val_acc", "test_acc", "val_top5", "test_top5"):
            if isinstance(s.get(key), (int, float)):
                rows.append((key, f"{s[key] * 100:.2f}%"))
        if s.get("best_epoch") is not None:
            rows.append(("best epoch", f"{s['best_epoch']} of {s.get('epochs')} ({s.get('selected_by')})"))
        if s.get("params") is not None:
            rows.append(("parameters", f"{s['params']:,}"))
        if s.get("wall_seconds") is not None:
            rows.append(("time", f"{s['wall_seconds']:.1f} s on {s.get('device')}"))
        cells = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(str(k))}</th>"
                        f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>" for k, v in rows)
        image = ""
        png = self.files.curves_png
        if png.is_file():
            data = base64.b64encode(png.read_bytes()).decode()
            image = f"<img src='data:image/png;base64,{data}' style='max-width:100%' alt='curves'>"
        return (f"<div><b>cnnlab run</b> <code>{html.escape(self.name)}</code><br>"
                f"<small>{html.escape(str(self.path))}</small><table>{cells}</table>{image}</div>")


def bind_objects(path: Path, *, model: Any = None, data: Any = None) -> None:
    """Let the Python objects a run was trained with stand again for the names its config gives them
    (a class from a notebook, an instance, a dataset), so this process can rebuild the run."""
    if model is None and data is None:
        return
    raw = RunFiles(path).check().config_raw()
    for section, key, obj in (("model", "name", model), ("data", "format", data)):
        name = (raw.get(section) or {}).get(key)
        if obj is not None and name:
            live.bind(str(name), obj)


def _as_images(images: Any, info: dict[str, Any]) -> Any:
    """Images in memory as an N x C x H x W tensor like the run's stored training images."""
    import numpy as np
    import torch

    from cnnlab.data.read.user import _image

    if isinstance(images, (list, tuple)):
        arr = np.stack([_image(im, f"images[{i}]") for i, im in enumerate(images)])
        return torch.from_numpy(arr)
    x = images.detach().cpu() if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images))
    c = info.get("image_shape", info["input_shape"])[0]
    if x.dim() == 3:
        x = x[:, None] if c == 1 else x[None]
    if x.dim() == 4 and x.shape[1] != c and x.shape[-1] == c:
        x = x.permute(0, 3, 1, 2)
    if x.dim() != 4:
        raise UserError(f"images: expected N x C x H x W (or N x H x W [x C]), got shape {tuple(x.shape)}")
    return x.contiguous() if x.dtype == torch.uint8 else x.float().contiguous()
