"""`cam`: where the network looks, by Grad-CAM, HiResCAM and gradient saliency, checked.

Attributions come from Captum (PyTorch's attribution library): Grad-CAM is
`LayerGradCam`; HiResCAM (Draelos & Carin 2020) is the channel sum of Captum's
`LayerGradientXActivation` (the gradient times the activation, element by element, where
Grad-CAM first averages the gradient over space), and saliency is `Saliency` (|d logit /
d pixel|, maximum over colour channels). The target layer is the last conv layer whose
output is at least 4x4, or `--layer`; the target class is the predicted one.

The sanity check is the model-randomisation test of Adebayo et al. 2018: re-initialise the
target layer and everything after it (the last block and the head), recompute the maps and
compare them with the trained model's by Spearman rank correlation. Maps that survive the
loss of what the network learnt (median correlation 0.5 or more) explain the input's edges,
not the model, and are flagged unreliable.

A NumPy-engine run is analysed through the torch module its weights are loaded into (the
same function: subject.py), so its gradients come from torch's autograd.
"""

from __future__ import annotations

import copy
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

UNRELIABLE = 0.5  # median Spearman correlation with the randomised model's maps


def target_layer(subject: Subject, model, x, name: str | None) -> str:
    """--layer, or the last conv layer whose output is at least 4x4 for these inputs."""
    if name is not None:
        return subject.layer(name)[0]
    convs = subject.layers()
    if not convs:
        subject.layer(None)  # one line: no conv layer
    sizes: dict[str, tuple[int, int]] = {}
    modules = dict(model.named_modules())
    hooks = [modules[n].register_forward_hook(lambda _m, _i, o, n=n: sizes.__setitem__(n, tuple(o.shape[-2:])))
             for n in convs]
    try:
        with torch.inference_mode():
            model(x[:1])
    finally:
        for h in hooks:
            h.remove()
    big = [n for n in convs if min(sizes.get(n, (0, 0))) >= 4]
    return big[-1] if big else next(iter(convs))


def attribution_model(model):
    """A copy whose ReLUs do not work in place: layer hooks must see the activations intact."""
    m = copy.deepcopy(model).eval()
    for mod in m.modules():
        if hasattr(mod, "inplace"):
            mod.inplace = False
    return m


def randomised(model, layer: str, seed: int):
    """The model with `layer` and every layer after it re-initialised (top-down cascade)."""
    m = copy.deepcopy(model)
    torch.manual_seed(seed)
    reached = False
    for name, mod in m.named_modules():
        reached = reached or name == layer
        if reached and hasattr(mod, "reset_parameters") and name:
            mod.reset_parameters()
    return m.eval()


def maps(model, layer: str, x, target) -> dict[str, np.ndarray]:
    """Grad-CAM, HiResCAM and saliency at input resolution, (N, H, W) each."""
    from captum.attr import LayerAttribution, LayerGradCam, LayerGradientXActivation, Saliency

    module = dict(model.named_modules())[layer]
    size = tuple(x.shape[-2:])
    grad_cam = LayerGradCam(model, module).attribute(x, target=target, relu_attributions=True)
    hires = LayerGradientXActivation(model, module).attribute(x, target=target).sum(1, keepdim=True).clamp(min=0)
    saliency = Saliency(model).attribute(x.clone().requires_grad_(True), target=target, abs=True).amax(1)
    up = lambda a: LayerAttribution.interpolate(a.detach(), size, interpolate_mode="bilinear")[:, 0]
    return {"gradcam": up(grad_cam).cpu().numpy(), "hirescam": up(hires).cpu().numpy(),
            "saliency": saliency.detach().cpu().numpy()}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    a, b = a.ravel(), b.ravel()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")  # a constant map has no ranking
    return float(spearmanr(a, b).statistic)


@ANALYSES.register("cam", context=CONTEXT)
def cam(subject: Subject, out: Outputs, layer: str | None = None, split: str | None = None,
        images: Annotated[int, Field(ge=1, le=64)] = 8, seed: int = 0) -> list[str]:
    """Grad-CAM, HiResCAM and gradient saliency overlays, and the same maps for a randomised model (target layer: the last conv whose output is at least 4x4)."""
    split_name, data = subject.split(split)
    idx = subject.pick(data, per_class=max(1, math.ceil(images / len(subject.classes))), seed=seed)[:images]
    x, y = subject.batch(data, idx)
    model = attribution_model(subject.model)
    name = target_layer(subject, model, x, layer)
    with torch.inference_mode():
        logits = model(x)
    pred = logits.argmax(1)
    prob = torch.softmax(logits.float(), 1)[torch.arange(len(pred)), pred]
    trained = maps(model, name, x, pred)
    shuffled = maps(randomised(model, name, seed), name, x, pred)
    out.forward_passes += 5 * len(x)  # a forward for the predictions, then one per map and model
    rho = {k: np.array([spearman(trained[k][i], shuffled[k][i]) for i in range(len(x))]) for k in trained}
    median = {k: float(np.nanmedian(v)) if np.isfinite(v).any() else float("nan") for k, v in rho.items()}

    shown = subject.display(x)
    cols = ["image", "Grad-CAM", "HiResCAM", "saliency", "Grad-CAM, randomised model"]
    fig, axes = plt.subplots(len(x), len(cols), figsize=(2.1 * len(cols), 2.2 * len(x)), squeeze=False,
                             layout="constrained")
    for i in range(len(x)):
        img = shown[i]
        grey = img if img.ndim == 2 else img.mean(-1)
        panels = [None, trained["gradcam"][i], trained["hirescam"][i], trained["saliency"][i], shuffled["gradcam"][i]]
        for j, (ax, panel) in enumerate(zip(axes[i], panels)):
            ax.axis("off")
            if panel is None:
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
                ax.set_title(f"{subject.classes[int(y[i])]} -> {subject.classes[int(pred[i])]} {float(prob[i]):.2f}",
                             fontsize=8)
                continue
            ax.imshow(grey, cmap="gray")
            ax.imshow(panel, cmap="jet", alpha=0.5, vmin=0, vmax=max(float(panel.max()), 1e-12))
            if i == 0:
                ax.set_title(cols[j], fontsize=8)
    verdict = "UNRELIABLE" if median["gradcam"] >= UNRELIABLE else "passes"
    fig.suptitle(f"{subject.run.name}: layer {name}, {split_name} images (true -> predicted p); randomisation "
                 f"check {verdict}: Spearman {median['gradcam']:.2f} (Grad-CAM), {median['hirescam']:.2f} (HiResCAM)",
                 fontsize=9)
    out.figure(fig, "cam.png", dpi=110)
    out.npz("maps", **{k: v for k, v in trained.items()}, **{f"randomised_{k}": v for k, v in shuffled.items()},
            labels=y.cpu().numpy(), predictions=pred.cpu().numpy(), indices=np.array(idx))
    out.csv("randomisation.csv", ["index", "true", "predicted", "spearman_gradcam", "spearman_hirescam",
                                  "spearman_saliency"],
            [[idx[i], subject.classes[int(y[i])], subject.classes[int(pred[i])], float(rho["gradcam"][i]),
              float(rho["hirescam"][i]), float(rho["saliency"][i])] for i in range(len(x))])
    out.json("cam.json", {"layer": name, "split": split_name, "images": len(x), "median_spearman": median,
                          "threshold": UNRELIABLE,
                          "unreliable": {k: bool(v >= UNRELIABLE) for k, v in median.items()}})
    lines = [f"target layer {name}; {len(x)} {split_name} images, target = predicted class"]
    for k, label in (("gradcam", "Grad-CAM"), ("hirescam", "HiResCAM"), ("saliency", "saliency")):
        flag = "UNRELIABLE: the maps barely change when the model is randomised" if median[k] >= UNRELIABLE \
            else "changes with the model: passes"
        lines.append(f"{label}: median Spearman vs randomised model {median[k]:.2f} ({flag})")
    return lines
