"""`features`: what chosen layers compute for a few images.

By default one test image per class (stratified, seeded) goes through the network; forward
hooks catch the output of each chosen layer (default: the first and the last conv layer,
after their activations). Each figure shows one image
beside its first `maps` feature maps, each map scaled to its own range, titled with the
channel's mean activation.
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

torch = lazy("torch")
nn = lazy("torch.nn")
plt = lazy("matplotlib.pyplot")


def capture(model, layers: dict[str, object], x):
    """The outputs of `layers` (name -> module) for batch x, by forward hooks removed after."""
    caught: dict[str, object] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: caught.__setitem__(n, o.detach()))
             for n, m in layers.items()]
    try:
        with torch.inference_mode():
            logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    return logits, caught


ACTIVATIONS = ("ReLU", "LeakyReLU", "ELU", "GELU", "SiLU", "Tanh", "Sigmoid", "Softplus", "Hardswish")


def default_layers(subject: Subject) -> dict[str, object]:
    """The first and the last conv layer, each seen after its activation when one follows it
    before the next conv (what the next layer receives), else at the conv's output."""
    subject.layer(None)  # the one-line refusal when there is no conv layer
    modules = list(subject.model.named_modules())
    picks: dict[str, object] = {}
    conv_at = [i for i, (_, m) in enumerate(modules) if isinstance(m, nn.Conv2d)]
    for at in dict.fromkeys([conv_at[0], conv_at[-1]]):
        name, module = modules[at]
        for later_name, later in modules[at + 1:]:
            if isinstance(later, nn.Conv2d):
                break
            if type(later).__name__ in ACTIVATIONS:
                name, module = later_name, later
                break
        picks[name] = module
    return picks


@ANALYSES.register("features", context=CONTEXT)
def features(subject: Subject, out: Outputs, layer: str | None = None, split: str | None = None,
             images: Annotated[int, Field(ge=1, le=100)] = 10,
             maps: Annotated[int, Field(ge=1, le=256)] = 16, seed: int = 0) -> list[str]:
    """Feature maps of the first and last conv layer (after their activations) for one test image per class, beside the image; the activations as .npz."""
    if layer is None:
        chosen = default_layers(subject)
    else:
        chosen = dict(subject.layer(n.strip(), (nn.Module,)) for n in layer.split(","))
    split_name, data = subject.split(split)
    idx = subject.pick(data, per_class=max(1, math.ceil(images / len(subject.classes))), seed=seed)[:images]
    x, y = subject.batch(data, idx)
    logits, caught = capture(subject.model, chosen, x)
    out.forward_passes += len(x)
    pred = logits.argmax(1).cpu().numpy()
    shown = subject.display(x)
    lines = []
    for name, act in caught.items():
        if act.dim() != 4:
            lines.append(f"{name}: output {tuple(act.shape[1:])} is not a feature map; skipped")
            continue
        a = act.float().cpu().numpy()
        k = min(maps, a.shape[1])
        cols = min(8, k)
        rows = math.ceil(k / cols)
        fig = plt.figure(figsize=(1.5 * (cols + 2), 1.6 * rows * len(a) + 0.6))
        grid = fig.add_gridspec(rows * len(a), cols + 2)
        for i in range(len(a)):
            ax = fig.add_subplot(grid[i * rows:(i + 1) * rows, 0:2])
            ax.imshow(shown[i], cmap="gray" if shown[i].ndim == 2 else None)
            ax.set_title(f"{subject.classes[int(y[i])]} -> {subject.classes[int(pred[i])]}", fontsize=8)
            ax.axis("off")
            for j in range(k):
                ax = fig.add_subplot(grid[i * rows + j // cols, 2 + j % cols])
                ax.imshow(a[i, j], cmap="viridis", interpolation="nearest")
                ax.set_title(f"c{j} {a[i, j].mean():.2f}", fontsize=6)
                ax.axis("off")
        fig.suptitle(f"{subject.run.name}: {name} {tuple(a.shape[1:])} for {len(a)} {split_name} images "
                     f"(true -> predicted); first {k} channels, each scaled to its range", fontsize=9)
        safe = name.replace(".", "_")
        out.figure(fig, f"{safe}.png", dpi=110, bbox_inches="tight")
        out.npz(safe, activations=a, labels=y.cpu().numpy(), predictions=pred, indices=np.array(idx))
        alive = float((a.reshape(a.shape[0], a.shape[1], -1).max(2) > 0).mean())
        lines.append(f"{name}: {a.shape[1]} maps of {a.shape[2]}x{a.shape[3]}; "
                     f"{alive * 100:.0f}% of channels active (max > 0) on these images")
    return lines
