"""curves.png is drawn into a figure each process keeps per layout (plots/curves.py): a study
worker draws one for every run. Drawn into the kept figure after other runs, it must be the very
image a fresh figure gives; the per-step line is drawn through each bucket's extremes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

import cnnlab.plots.curves as curves
from cnnlab.io import save_figure


def history(epochs: int, top5: bool, imbalanced: bool = False) -> list[dict]:
    rows = []
    for e in range(1, epochs + 1):
        row = {"epoch": e, "train_loss": 1 / e, "train_acc": 0.6 + e / 50, "val_loss": 0.8 / e, "val_acc": 0.55 + e / 40,
               "test_loss": 0.7 / e, "test_acc": 0.5 + e / 30}
        if top5:
            row |= {"val_top5": 0.9 + e / 100, "test_top5": 0.88 + e / 90}
        if imbalanced:
            row |= {"train_balanced_acc": 0.4 + e / 50, "test_balanced_acc": 0.3 + e / 40}
        rows.append(row)
    return rows


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"))


def test_the_kept_figure_draws_what_a_fresh_one_draws(tmp_path):
    rng = np.random.default_rng(0)
    no_losses = [{k: v for k, v in row.items() if not k.endswith("_loss")} for row in history(3, False)]
    runs = [  # each layout drawn again after a run that fixed its loss range, had legends, other epochs
        (history(5, True, imbalanced=True), list(np.exp(-np.arange(9000) / 2000) + 3 * rng.random(9000)), 1800, "a"),
        (history(2, True), list(0.05 + 0.1 * rng.random(40)), 20, ""),
        (history(3, False), list(1 + rng.random(300)), 100, "without top-5"),
        (no_losses, [], 1, "an empty loss panel"),  # no lines: no legend left, the default range again
        (history(4, True), list(2 + rng.random(400)), 100, "the last"),
    ]
    curves._kept.clear()
    for i, (hist, steps, per_epoch, title) in enumerate(runs):
        kept, fresh = tmp_path / f"kept{i}.png", tmp_path / f"fresh{i}.png"
        curves.plot_curves(hist, steps, per_epoch, kept, title=title)
        fig = curves.curves_figure(hist, steps, per_epoch, title)
        save_figure(fig, fresh, dpi=110)
        plt.close(fig)
        a, b = pixels(kept), pixels(fresh)
        assert a.shape == b.shape and np.array_equal(a, b), f"run {i}"
        assert a[..., :3].std() > 20  # not blank
    assert set(curves._kept) == {True, False}  # one figure per layout, reused


def test_the_per_step_line_keeps_every_buckets_extremes():
    rng = np.random.default_rng(1)
    y = rng.standard_normal(10_001)
    x = np.arange(1, len(y) + 1) / 100
    xs, ys = curves.envelope(x, y, buckets=1000)
    assert len(ys) <= 2 * 1000 and np.all(np.diff(xs) > 0)  # in step order, no point twice
    k = -(-len(y) // 1000)
    for start in range(0, len(y), k):
        part = y[start:start + k]
        inside = ys[(xs >= x[start]) & (xs <= x[min(start + k, len(y)) - 1])]
        assert part.min() in inside and part.max() in inside
    assert ys.min() == y.min() and ys.max() == y.max()
    short = rng.standard_normal(50)
    assert curves.envelope(np.arange(50.0), short)[1] is short  # short series are drawn as they are
