"""`kernels`: a conv layer's filters as pictures.

The first conv layer (default) sees the image: each filter is drawn as one RGB tile when it
has 3 input channels (grey otherwise), min-max normalised on its own, titled with its L2
norm. A deeper layer's filters have one slice per input channel, so they are drawn as a
grid of the first `filters` filters (rows) by their first `channels` input channels.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated

import numpy as np
from pydantic import Field

from cnnlab.analysis.registry import ANALYSES, CONTEXT
from cnnlab.lazy import lazy

if TYPE_CHECKING:
    from cnnlab.analysis.outputs import Outputs
    from cnnlab.analysis.subject import Subject

plt = lazy("matplotlib.pyplot")


def _unit(w: np.ndarray) -> np.ndarray:
    lo, hi = float(w.min()), float(w.max())
    return (w - lo) / (hi - lo) if hi > lo else np.zeros_like(w) + 0.5


@ANALYSES.register("kernels", context=CONTEXT)
def kernels(subject: Subject, out: Outputs, layer: str | None = None,
            filters: Annotated[int, Field(ge=1, le=1024)] = 64,
            channels: Annotated[int, Field(ge=1, le=64)] = 8) -> list[str]:
    """The first conv layer's filters (RGB tiles when it sees 3 channels), each min-max scaled and titled with its L2 norm; a deeper layer as filters x input channels; the weights (.npz) and norms (CSV)."""
    name, conv = subject.layer(layer)
    w = conv.weight.detach().float().cpu().numpy()  # (out, in, kh, kw)
    norms = np.sqrt((w.reshape(len(w), -1) ** 2).sum(1))
    shown = w[:filters]
    safe = name.replace(".", "_")
    if shown.shape[1] in (1, 3):
        cols = math.ceil(math.sqrt(len(shown)))
        rows = math.ceil(len(shown) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(max(5.5, 1.3 * cols), 1.45 * rows + 0.6), squeeze=False,
                                 layout="constrained")
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i < len(shown):
                tile = _unit(shown[i].transpose(1, 2, 0))
                ax.imshow(tile if tile.shape[-1] == 3 else tile[..., 0], cmap=None if tile.shape[-1] == 3 else "gray",
                          interpolation="nearest")
                ax.set_title(f"{i}: {norms[i]:.2f}", fontsize=7)
    else:
        c = min(channels, shown.shape[1])
        fig, axes = plt.subplots(len(shown), c, figsize=(max(5.5, 1.0 * c + 0.6), 1.0 * len(shown) + 0.6),
                                 squeeze=False, layout="constrained")
        for i in range(len(shown)):
            scaled = _unit(shown[i])  # one scale per filter: its input channels stay comparable
            for j in range(c):
                ax = axes[i, j]
                ax.imshow(scaled[j], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if j == 0:
                    ax.set_ylabel(f"{i}: {norms[i]:.2f}", fontsize=7)
                if i == 0:
                    ax.set_title(f"in {j}", fontsize=7)
    fig.suptitle(f"{subject.run.name}: layer {name} {tuple(w.shape)}, {subject.which} checkpoint\n"
                 "each filter min-max scaled; index: L2 norm", fontsize=9)
    out.figure(fig, f"{safe}.png", dpi=130)
    out.csv(f"{safe}-norms.csv", ["filter", "l2_norm"], [[i, float(v)] for i, v in enumerate(norms)])
    out.npz(safe, weight=w)
    return [f"{name}: {w.shape[0]} filters of {w.shape[1]}x{w.shape[2]}x{w.shape[3]}; "
            f"L2 norms {norms.min():.3f}..{norms.max():.3f} (median {np.median(norms):.3f}); "
            f"{min(filters, len(w))} drawn"]
