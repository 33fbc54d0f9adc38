"""`errors`: where the model fails (fastai's "interpretation", with scikit-learn's numbers).

One pass over a split (default: test, else val) with the run's evaluation (its TTA and
autocast, as `cnnlab evaluate`) gives each image's softmax probabilities. Written: a gallery
of the most confident mistakes (true class, predicted class and its probability), the most
confused class pairs (CSV, and the top ones as findings), per-class precision, recall and F1
(scikit-learn), and a bar chart of per-class accuracy.
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
plt = lazy("matplotlib.pyplot")


def probabilities(subject: Subject, data) -> tuple[np.ndarray, np.ndarray]:
    """(softmax probabilities (N, K), labels (N,)) for a split, evaluated as `cnnlab evaluate` does."""
    from cnnlab.device import autocast
    from cnnlab.training.tta import with_tta

    model = with_tta(subject.model, subject.cfg.train.tta)
    run_in = autocast(subject.cfg.train.amp, subject.device)
    probs, labels = [], []
    with torch.inference_mode():
        for x, y in subject.loader(data):
            with run_in():
                logits = model(x)
            probs.append(torch.softmax(logits.float(), 1).cpu())
            labels.append(y.cpu())
    return torch.cat(probs).numpy(), torch.cat(labels).numpy()


@ANALYSES.register("errors", context=CONTEXT)
def errors(subject: Subject, out: Outputs, split: str | None = None,
           top: Annotated[int, Field(ge=1, le=100)] = 16,
           pairs: Annotated[int, Field(ge=1, le=1000)] = 20) -> list[str]:
    """The most confident mistakes (true, predicted, probability), the most confused class pairs, per-class precision/recall/F1 (scikit-learn) and a per-class accuracy chart; the numbers equal `cnnlab evaluate`'s (same TTA)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    split_name, data = subject.split(split)
    probs, y = probabilities(subject, data)
    out.forward_passes += len(y)
    classes = subject.classes
    k = len(classes)
    pred = probs.argmax(1)
    conf = probs[np.arange(len(y)), pred]
    wrong = np.flatnonzero(pred != y)
    order = wrong[np.argsort(-conf[wrong], kind="stable")]
    ids = getattr(data, "ids", None)

    # The gallery: the most confident mistakes first.
    shown = order[:top].tolist()
    rows = [[int(i), ids[i] if ids else "", classes[y[i]], classes[pred[i]], float(conf[i]), float(probs[i, y[i]])]
            for i in order.tolist()]
    out.csv("mistakes.csv", ["index", "id", "true", "predicted", "p_predicted", "p_true"], rows)
    if shown:
        x, _ = subject.batch(data, shown)
        images = subject.display(x)
        cols = min(8, len(shown))
        nrows = math.ceil(len(shown) / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(1.9 * cols, 2.6 * nrows), squeeze=False, layout="constrained")
        for ax in axes.flat:
            ax.axis("off")
        for ax, i, img in zip(axes.flat, shown, images):
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
            ax.set_title(f"true {classes[y[i]]}\npred {classes[pred[i]]} {conf[i]:.2f}", fontsize=8)
        fig.suptitle(f"{subject.run.name}: the {len(shown)} most confident of {len(wrong)} mistakes on {split_name} "
                     f"({len(y)} images)", fontsize=9)
        out.figure(fig, "mistakes.png", dpi=120)

    # Confused pairs and per-class numbers.
    cm = confusion_matrix(y, pred, labels=list(range(k)))
    off = [(int(cm[a, b]), a, b) for a in range(k) for b in range(k) if a != b and cm[a, b] > 0]
    off.sort(key=lambda t: (-t[0], t[1], t[2]))
    out.csv("confused-pairs.csv", ["true", "predicted", "count", "share_of_true"],
            [[classes[a], classes[b], n, n / max(1, cm[a].sum())] for n, a, b in off[:pairs]])
    p, r, f1, support = precision_recall_fscore_support(y, pred, labels=list(range(k)), zero_division=0)
    acc = np.divide(np.diag(cm), cm.sum(1), out=np.zeros(k), where=cm.sum(1) > 0)
    out.csv("per-class.csv", ["class", "precision", "recall", "f1", "support", "accuracy"],
            [[classes[i], float(p[i]), float(r[i]), float(f1[i]), int(support[i]), float(acc[i])] for i in range(k)])
    order_k = np.argsort(acc, kind="stable")
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.22 * k + 1)))
    ax.barh(range(k), acc[order_k] * 100, color="tab:blue")
    if k <= 60:
        ax.set_yticks(range(k))
        ax.set_yticklabels([classes[i] for i in order_k], fontsize=7 if k > 20 else 9)
    ax.axvline(float((pred == y).mean()) * 100, color="tab:red", lw=1, label="overall")
    ax.set_xlabel(f"accuracy on {split_name} (%)")
    ax.set_xlim(0, 100)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"{subject.run.name}: per-class accuracy, worst first", fontsize=9)
    fig.tight_layout()
    out.figure(fig, "per-class-accuracy.png", dpi=120)
    out.json("errors.json", {"split": split_name, "images": int(len(y)), "mistakes": int(len(wrong)),
                             "accuracy": float((pred == y).mean()), "macro_f1": float(f1.mean()),
                             "confusion": cm.tolist()})

    lines = [f"{split_name}: {len(wrong)} mistakes of {len(y)} ({(pred == y).mean() * 100:.2f}% right); "
             f"macro F1 {f1.mean():.3f}"]
    if len(wrong):
        lines.append(f"most confident mistake: a {classes[y[order[0]]]} taken for {classes[pred[order[0]]]} "
                     f"at p={conf[order[0]]:.3f}")
    lines += [f"confused: {classes[a]} -> {classes[b]} {n} times" for n, a, b in off[:3]]
    worst = order_k[:3]
    lines.append("worst classes: " + ", ".join(f"{classes[i]} {acc[i] * 100:.1f}%" for i in worst))
    return lines
