"""The run an analysis looks at: its config, data and trained network as a torch module.

Both engines' runs load as the torch module config.yaml builds (the NumPy engine's weights
are put back into it), so every analysis hooks, perturbs and differentiates one kind of
model. Data come as the run saw them at evaluation: the deterministic augmentations, the
training split's normalisation; `display` undoes the normalisation for figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab.config import Config
from cnnlab.data.augment import build_pipeline
from cnnlab.data.build import build_data
from cnnlab.data.loading import make_loader
from cnnlab.data.types import AnySplit, DataBundle
from cnnlab.device import resolve_device
from cnnlab.errors import UserError
from cnnlab.models import build_model
from cnnlab.reopen import run_config
from cnnlab.rundir import Run
from cnnlab.training.engines import engine_type


@dataclass
class Subject:
    run: Run
    cfg: Config
    info: dict[str, Any]  # data.json
    model: nn.Module  # eval mode, the checkpoint's weights
    payload: dict[str, Any]  # the checkpoint
    which: str  # best | last
    device: torch.device
    _bundle: DataBundle | None = field(default=None, repr=False)

    @property
    def classes(self) -> list[str]:
        return list(self.info["classes"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.info["input_shape"])  # type: ignore[return-value]

    # ------------------------------------------------------------------ networks

    def network(self, which: str | None = None) -> nn.Module:
        """A fresh copy of the network with the weights of checkpoint `which` (default: the
        analysed one); 'init' is the weights before the first step."""
        if which is None or which == self.which:
            payload = self.payload
        else:
            payload = self.run.checkpoint(which)
        return _torch_model(self.cfg, self.info, payload["model"], self.device, self.run, which or self.which)

    def layers(self, kinds: tuple[type, ...] = (nn.Conv2d,)) -> dict[str, nn.Module]:
        """Named layers of these kinds, in forward order of definition."""
        return {n: m for n, m in self.model.named_modules() if n and isinstance(m, kinds)}

    def layer(self, name: str | None, kinds: tuple[type, ...] = (nn.Conv2d,), default: str = "first") -> tuple[str, nn.Module]:
        """The layer `--layer` names (or the first/last of its kinds), or a UserError listing them."""
        found = self.layers(kinds)
        what = "named" if kinds == (nn.Module,) else " or ".join(k.__name__ for k in kinds)
        if not found:
            raise UserError(f"{self.run.path}: the model ({self.cfg.model.name}) has no {what} layer to analyse")
        if name is None:
            key = next(iter(found)) if default == "first" else list(found)[-1]
            return key, found[key]
        if name not in found:
            shown = list(found)
            more = f" and {len(shown) - 30} more" if len(shown) > 30 else ""
            raise UserError(f"--layer {name}: no {what} layer of that name; the model has: "
                            f"{', '.join(shown[:30])}{more}")
        return name, found[name]

    # ------------------------------------------------------------------ data

    def bundle(self) -> DataBundle:
        if self._bundle is None:
            bundle = build_data(self.cfg.data, self.cfg.seed, self.device)
            if bundle.classes != self.classes:
                raise UserError(f"{self.cfg.data.path}: the dataset's classes changed since {self.run.name} was trained")
            self._bundle = bundle
        return self._bundle

    def split(self, name: str | None) -> tuple[str, AnySplit]:
        """A labelled split by name (default: test, else val, else train)."""
        splits = {k: v for k, v in self.bundle().splits().items() if v.y is not None}
        if name is None:
            name = next((s for s in ("test", "val", "train") if s in splits), None)
            if name is None:
                raise UserError(f"{self.cfg.data.path}: no split has labels to analyse")
        if name not in splits:
            raise UserError(f"--split {name}: this dataset has no labelled {name} split (it has: {', '.join(splits)})")
        return name, splits[name]

    def pick(self, split: AnySplit, per_class: int = 1, limit: int | None = None, seed: int = 0) -> list[int]:
        """A stratified, seeded choice of sample indices: `per_class` of every class (as far
        as the class has them), at most `limit` in all, ordered by class."""
        y = split.y.cpu().numpy()
        rng = np.random.default_rng(seed)
        chosen: list[int] = []
        for k in range(len(self.classes)):
            idx = np.flatnonzero(y == k)
            chosen += sorted(rng.choice(idx, size=min(per_class, len(idx)), replace=False).tolist())
        return chosen[:limit] if limit is not None else chosen

    def stratified(self, split: AnySplit, n: int, seed: int = 0) -> list[int]:
        """n indices with the split's class proportions, seeded (as data.limit_* picks them)."""
        from cnnlab.data.split import stratified_subset

        return stratified_subset(split.y.cpu(), min(n, len(split)), seed)

    def loader(self, split: AnySplit, batch_size: int | None = None) -> Any:
        """Evaluation batches of a split, in order, as the run evaluated them."""
        b = self.bundle()
        pipeline = build_pipeline(self.cfg.augment, b.image_shape, len(self.classes))
        if list(pipeline.input_shape) != list(self.input_shape):
            raise UserError(f"{self.cfg.data.path}: images now reach the model as {list(pipeline.input_shape)} "
                            f"but {self.run.name} was trained on {list(self.input_shape)} (C, H, W)")
        return make_loader(split, pipeline, batch_size or self.cfg.train.eval_batch_size, self.device, b.scale,
                           self.info["mean"], self.info["std"], workers=self.cfg.data.workers)

    def batch(self, split: AnySplit, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The samples at `indices` as one normalised batch and their labels."""
        xs, ys = [], []
        for x, y in self.loader(split.subset(indices), batch_size=max(1, len(indices))):
            xs.append(x)
            ys.append(y)
        return torch.cat(xs).contiguous(), torch.cat(ys)

    def images(self, split: str | None = None, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Up to n images of a labelled split (default: test, else val, else train) as the model
        takes them (normalised, on its device), and their labels: all of them, or a stratified,
        seeded n. The simplest door for an analysis of one's own."""
        _, s = self.split(split)
        idx = self.stratified(s, n, seed) if n is not None else list(range(len(s)))
        return self.batch(s, idx)

    def display(self, x: torch.Tensor) -> np.ndarray:
        """Normalised images (N, C, H, W) back to (N, H, W, C) in 0..1 for figures."""
        mean = torch.tensor(self.info["mean"], device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.info["std"], device=x.device).view(1, -1, 1, 1)
        img = (x.float() * std + mean).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        return img[..., 0] if img.shape[-1] == 1 else img


def load(run_dir: Path, which: str = "best") -> Subject:
    """The run at run_dir with checkpoint `which`; a UserError when it has none."""
    run = Run(run_dir)
    cfg = run_config(run.check())
    info = run.data_info
    payload = run.checkpoint(which)
    device = resolve_device(engine_type(cfg).device(cfg))
    model = _torch_model(cfg, info, payload["model"], device, run, which)
    return Subject(run, cfg, info, model, payload, which, device)


def _torch_model(cfg: Config, info: dict[str, Any], weights: dict[str, Any], device: torch.device, run: Run,
                 which: str) -> nn.Module:
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, tuple(info["input_shape"]), len(info["classes"]))
    try:
        return engine_type(cfg).torch_model(cfg, model, weights, device)
    except RuntimeError as e:
        raise UserError(f"{run.checkpoint_path(which)}: weights do not fit the model in config.yaml "
                        f"({str(e).splitlines()[0]})") from None
