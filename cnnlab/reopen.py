"""Reopening a run: the one way every command that reads a trained run back gets it.

`open_run(RUN_DIR, checkpoint)` gives the run's config resolved again with the code it was
trained with (its user files checked against code.json first: cnnlab/usercode/record.py), its
data.json and checkpoint, and on demand its trained network, its data (checked against what the
run recorded: one wording of "the dataset changed"), the augment pipeline of evaluation (checked
to give the input shape it was trained on) and evaluation loaders normalised as in training.
evaluate, predict, export, resume, the analyses (analysis/subject.py) and the Python API's Run use
it; rundir.py below it is the plain file layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cnnlab.config import Config
from cnnlab.errors import ConfigError, UserError
from cnnlab.resolve import resolve
from cnnlab.rundir import Run
from cnnlab.usercode.record import CodeSource, prepare

Checkpoint = Literal["best", "last", "init"]


def run_config(run: Run, code: CodeSource | None = None) -> Config:
    """The run's resolved config; `code`: check (default), stored or current (see record.py)."""
    raw = run.config_raw()
    prepare(run.code_manifest(), run.path, code)
    try:
        return resolve(raw)
    except ConfigError as e:
        raise UserError(f"{run.config_file}: {e}") from None


def open_run(run_dir: str | Path | Run, checkpoint: Checkpoint | None = "best",
             code: CodeSource | None = None) -> OpenRun:
    """The run at run_dir, its config resolved and its data.json read (a UserError in one line when
    it is not a run, its code changed, or its config no longer validates); `checkpoint`: the weights
    model() loads (None: no checkpoint needed, as for resume)."""
    run = run_dir if isinstance(run_dir, Run) else Run(run_dir)
    run.check()
    cfg = run_config(run, code)
    return OpenRun(run, cfg, run.data_info, checkpoint)


@dataclass
class OpenRun:
    """A run directory reopened (see open_run)."""

    run: Run
    cfg: Config
    info: dict[str, Any]  # data.json: classes, label values, input shape, normalisation, split sizes
    which: Checkpoint | None
    _payload: dict[str, Any] | None = field(default=None, repr=False)
    _bundle: Any = field(default=None, repr=False)

    @property
    def classes(self) -> list[str]:
        return list(self.info["classes"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.info["input_shape"])  # type: ignore[return-value]

    @property
    def payload(self) -> dict[str, Any]:
        """The checkpoint's content (read once)."""
        if self._payload is None:
            self._payload = self.run.checkpoint(self.which or "best")
        return self._payload

    @property
    def temperature(self) -> float:
        """The temperature `cnnlab calibrate` fitted for this checkpoint (1.0 when none, or when it
        was fitted on an earlier epoch's weights: a resumed run's best.pt may have moved on)."""
        which = self.which or "best"
        entry = self.run.calibration(which)
        if entry is None or entry.get("epoch") != self.payload.get("epoch"):
            return 1.0
        return float(entry["temperature"])

    # ------------------------------------------------------------------ the network

    @property
    def device(self) -> Any:
        """Where the run's engine computes (the NumPy engine: the CPU)."""
        from cnnlab.device import resolve_device
        from cnnlab.training.engines import engine_type

        return resolve_device(engine_type(self.cfg).device(self.cfg))

    def model(self, which: Checkpoint | None = None, *, torch_module: bool = False, device: Any = None) -> Any:
        """The trained network in eval mode with a checkpoint's weights (default: the opened one).
        The engine's own scorer (what evaluate and predict score: a NumPy network for engine:
        scratch), or with torch_module the torch module config.yaml builds holding those weights
        (what export and the analyses work on), on `device` (default: the engine's; the CPU for
        a torch module unless given)."""
        import torch

        from cnnlab.models import build_model
        from cnnlab.training.engines import engine_type

        which = which or self.which or "best"
        payload = self.payload if which == (self.which or "best") else self.run.checkpoint(which)
        kind = engine_type(self.cfg)
        torch.manual_seed(self.cfg.seed)
        net = build_model(self.cfg.model, self.input_shape, len(self.classes))
        try:
            if torch_module:
                return kind.torch_model(self.cfg, net, payload["model"], device or torch.device("cpu"))
            return kind.inference_model(self.cfg, net, payload["model"], device or self.device)
        except RuntimeError as e:
            raise UserError(f"{self.run.checkpoint_path(which)}: weights do not fit the model in config.yaml "
                            f"({str(e).splitlines()[0]})") from None

    def loss(self) -> Any:
        """The run's data loss, as its evaluation computed it."""
        from cnnlab.training.losses import build_loss

        return build_loss(self.cfg.loss, len(self.classes), (self.info.get("class_counts") or {}).get("train"))

    # ------------------------------------------------------------------ the data

    def bundle(self, device: Any = None, sizes: bool = False, data: Any = None) -> Any:
        """The run's dataset read again, refused in one line when its classes (with `sizes`, also its
        split sizes: resume must replay the same batches) differ from what the run recorded."""
        if self._bundle is None:
            from cnnlab.data.build import build_data

            self._bundle = build_data(data or self.cfg.data, self.cfg.seed, device)
        b = self._bundle
        what = ("classes" if b.classes != self.info.get("classes") else
                "split sizes" if sizes and b.info()["sizes"] != self.info.get("sizes") else None)
        if what is not None:
            raise UserError(f"{self.cfg.data.path or self.cfg.data.format}: the dataset changed since {self.run.name} "
                            f"was trained (its {what} differ from data.json); point data.path at the data it was "
                            "trained on")
        return b

    def split(self, name: str | None = None, labelled: bool = False) -> tuple[str, Any]:
        """A split by name (default: test, else val, else train), or one line naming those there are."""
        splits = {k: v for k, v in self.bundle().splits().items() if not labelled or v.y is not None}
        if name is None:
            name = next((s for s in ("test", "val", "train") if s in splits), None)
            if name is None:
                raise UserError(f"{self.cfg.data.path}: no split has labels to use")
        if name not in splits:
            raise UserError(f"--split {name}: this dataset has no {'labelled ' if labelled else ''}{name} split "
                            f"(it has: {', '.join(splits)})")
        return name, splits[name]

    def pipeline(self, image_shape: tuple[int, ...] | None = None) -> Any:
        """The augment pipeline for images of `image_shape` (default: the data's), checked to give the
        model the input shape it was trained on."""
        from cnnlab.data.augment import build_pipeline

        shape = tuple(image_shape) if image_shape is not None else self.bundle().image_shape
        pipeline = build_pipeline(self.cfg.augment, shape, len(self.classes))
        if list(pipeline.input_shape) != list(self.input_shape):
            raise UserError(f"{self.cfg.data.path or self.cfg.data.format}: images now reach the model as "
                            f"{list(pipeline.input_shape)} but {self.run.name} was trained on "
                            f"{list(self.input_shape)} (C, H, W)")
        return pipeline

    def loader(self, split: Any, batch_size: int | None = None, device: Any = None, normalise: bool = True,
               workers: int | None = None) -> Any:
        """Evaluation batches of a split, in order, normalised with the training split's statistics
        (normalise=False: scaled to [0, 1] only, as an exported model takes them)."""
        import torch

        from cnnlab.data.batches import LoaderOptions, make_loader

        options = LoaderOptions(device or torch.device("cpu"), self.bundle().scale, self.info["mean"], self.info["std"],
                                workers=self.cfg.data.workers if workers is None else workers)
        return make_loader(split, self.pipeline(), batch_size or self.cfg.train.eval_batch_size,
                           options if normalise else options.unnormalised())
