"""Reliability diagram: accuracy against confidence in the ECE's 15 equal-width bins, with the share
of images per bin below it; one curve per temperature (before and after `cnnlab calibrate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import cnnlab.plots  # noqa: F401  (selects the Agg backend)
from cnnlab.io import save_figure


def plot_reliability(curves: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    """`curves`: label -> {"bins": {"images", "confidence", "accuracy"}, "ece": float}, as
    training.metrics.Evaluation holds them; a bin without images is left out."""
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.2, 6.2), sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfectly calibrated")
    for i, (label, c) in enumerate(curves.items()):
        bins = c["bins"]
        images = np.asarray(bins["images"], dtype=float)
        keep = images > 0
        conf = np.asarray([v for v, k in zip(bins["confidence"], keep) if k], dtype=float)
        acc = np.asarray([v for v, k in zip(bins["accuracy"], keep) if k], dtype=float)
        top.plot(conf, acc, marker="o", ms=4, lw=1.5, label=f"{label}: ECE {c['ece'] * 100:.2f}%")
        edges = np.linspace(0, 1, len(images) + 1)
        width = (edges[1] - edges[0]) / max(1, len(curves))
        bottom.bar(edges[:-1] + i * width, images / max(1.0, images.sum()), width=width, align="edge",
                   label=label, alpha=0.8)
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy in bin")
    top.set_title(title, fontsize=10)
    top.legend(fontsize=8, loc="upper left")
    bottom.set_xlabel("confidence (top-class probability), 15 equal-width bins")
    bottom.set_ylabel("share of images")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
