"""What the runs one process trains one after another share (a study worker's runs).

A study worker trains many runs, often small ones, and rebuilding for each what they have in
common cost them more than their training (bench/RESULTS.md, "Study overhead"). With
`runner.train(..., shared=True)`:

- the decoded dataset is built once per data section and seed (data/memo.py: the same arrays,
  checked unchanged at every reuse);
- samples.png is drawn once per dataset, augmentation and seed, and copied into every run that
  shows the same images (its title names no run, so the copies are the same figure);
- curves.png is drawn once, when a run's training ends, rather than after every epoch
  (plots/curves.py, drawn_at_end).

A run trained this way has the metrics and checkpoints of the same run trained alone
(tests/test_study_overhead.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.data.types import DataBundle
from cnnlab.io import write_bytes
from cnnlab.plots.samples import write_samples
from cnnlab.usercode.imports import is_reference

if TYPE_CHECKING:
    from cnnlab.training.session import Session

KEEP = 2  # figures kept: as many as data/memo.py keeps bundles


@dataclass
class _Drawn:
    bundle: DataBundle  # held, so that `is` cannot match a later bundle at a reused address
    key: str  # the augmentation, input shape and seed
    png: bytes


_drawn: list[_Drawn] = []


def shared_samples(session: Session, path: Path) -> None:
    """samples.png of a run of many: copied from an earlier run's when it shows the same images
    (the same bundle object from data/memo.py, augmentation and seed), else drawn and kept."""
    cfg = session.cfg
    if cfg.imports or any(is_reference(op.get("name") if isinstance(op, dict) else op) for op in cfg.augment):
        # your own code may draw differently after an edit (it is imported again): drawn for every run
        write_samples(session.bundle, session.pipeline, cfg.seed, path)
        return
    key = json.dumps([cfg.augment, list(session.pipeline.input_shape), cfg.seed], sort_keys=True, default=str)
    for drawn in _drawn:
        if drawn.bundle is session.bundle and drawn.key == key:
            write_bytes(path, drawn.png)
            return
    write_samples(session.bundle, session.pipeline, cfg.seed, path)
    _drawn.append(_Drawn(session.bundle, key, Path(path).read_bytes()))
    del _drawn[:-KEEP]
