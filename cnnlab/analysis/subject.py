"""The run an analysis looks at: its config, data and trained network as a torch module.

Both engines' runs load as the torch module config.yaml builds (the NumPy engine's weights
are put back into it), so every analysis hooks, perturbs and differentiates one kind of
model. Data come as the run saw them at evaluation: the deterministic augmentations, the
training split's normalisation; `display` undoes the normalisation for figures. The run is
reopened by cnnlab/reopen.py's open_run, as every command does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab.config import Config
from cnnlab.data.types import AnySplit, DataBundle
from cnnlab.errors import UserError
from cnnlab.reopen import OpenRun, open_run
from cnnlab.rundir import Run


@dataclass
class Subject:
    opened: OpenRun  # the run reopened: config, data.json, checkpoint, data
    model: nn.Module  # eval mode, the checkpoint's weights
    device: torch.device

    @property
    def run(self) -> Run:
        return self.opened.run

    @property
    def cfg(self) -> Config:
        return self.opened.cfg

    @property
    def info(self) -> dict[str, Any]:
        """data.json."""
        return self.opened.info

    @property
    def payload(self) -> dict[str, Any]:
        """The checkpoint analysed."""
        return self.opened.payload

    @property
    def which(self) -> str:
        return self.opened.which or "best"

    @property
    def classes(self) -> list[str]:
        return self.opened.classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.opened.input_shape

    # ------------------------------------------------------------------ networks

    def network(self, which: str | None = None) -> nn.Module:
        """A fresh copy of the network with the weights of checkpoint `which` (default: the
        analysed one); 'init' is the weights before the first step."""
        return self.opened.model(which, torch_module=True, device=self.device)

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
        return self.opened.bundle(self.device)

    def split(self, name: str | None) -> tuple[str, AnySplit]:
        """A labelled split by name (default: test, else val, else train)."""
        self.bundle()
        return self.opened.split(name, labelled=True)

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
        self.bundle()
        return self.opened.loader(split, batch_size, self.device)

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
    opened = open_run(run_dir, which)  # type: ignore[arg-type]
    opened.payload  # noqa: B018  (a run without the checkpoint: its one line, before any work)
    device = opened.device
    return Subject(opened, opened.model(torch_module=True, device=device), device)
