"""Finite-difference gradient check of every layer and loss, in float64.

Each case builds one layer on a random input of an awkward shape (odd sizes, stride 2,
padding, batch 1), backpropagates a random upstream gradient G through the scalar
f(x) = sum(layer(x) * G), and compares the analytic input and parameter gradients with central
differences (f(v + h) - f(v - h)) / 2h. Run as ``python -m cnnlab.scratch.gradcheck``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .layers import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Layer,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    Sigmoid,
    Softplus,
    Tanh,
)
from .losses import MultiClassHinge, SoftmaxCrossEntropy

TOLERANCE = 1e-6
STEP = 1e-6  # central differences: truncation ~STEP^2, round-off ~1e-16 / STEP


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b| scaled by the larger magnitude, with a floor so zero gradients compare sanely."""
    scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)), 1e-8)
    return float(np.max(np.abs(a - b), initial=0.0)) / scale


def numerical_gradient(f: Callable[[], float], array: np.ndarray, step: float = STEP) -> np.ndarray:
    """d f / d array by central differences, perturbing ``array`` in place one entry at a time."""
    flat = array.reshape(-1)  # a view: the caller's array is what f reads
    if not np.shares_memory(flat, array):
        raise ValueError("numerical_gradient needs a contiguous array")
    grad = np.zeros(flat.shape, dtype=np.float64)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + step
        plus = f()
        flat[i] = saved - step
        minus = f()
        flat[i] = saved
        grad[i] = (plus - minus) / (2.0 * step)
    return grad.reshape(array.shape)


@dataclass
class Case:
    """One layer on one input: how to build it and what to feed it."""

    name: str
    make: Callable[[], Layer]
    x: np.ndarray
    training: bool = True
    # Called before every forward pass, e.g. to replay the same dropout mask.
    before_forward: Callable[[Layer], None] = field(default=lambda layer: None)
    # Compare the whole gradient vector at once (models, where some entries are ~0 by design).
    joint: bool = False


def check_layer(case: Case, rng: np.random.Generator) -> dict[str, float]:
    """Relative errors of the input gradient and of each parameter gradient of one case."""
    layer = case.make().astype(np.float64)
    x = np.ascontiguousarray(case.x, dtype=np.float64)
    case.before_forward(layer)
    upstream = rng.standard_normal(layer.forward(x, case.training).shape)

    def f() -> float:
        case.before_forward(layer)
        return float(np.sum(layer.forward(x, case.training) * upstream))

    case.before_forward(layer)
    layer.forward(x, case.training)
    analytic = {"input": layer.backward(upstream)}
    analytic.update({k: v.copy() for k, v in layer.grads.items()})
    numeric = {"input": numerical_gradient(f, x)}
    for key, param in layer.params.items():
        numeric[key] = numerical_gradient(f, param)
    if case.joint:
        joined = [np.concatenate([d[k].ravel() for k in analytic]) for d in (analytic, numeric)]
        return {"all": relative_error(*joined)}
    return {key: relative_error(analytic[key], numeric[key]) for key in analytic}


def check_loss(loss, logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Relative error of d loss / d logits."""
    logits = np.ascontiguousarray(logits, dtype=np.float64)
    loss.forward(logits, y)
    analytic = loss.backward()
    numeric = numerical_gradient(lambda: loss.forward(logits, y), logits)
    return {"logits": relative_error(analytic, numeric)}


# --- inputs that keep finite differences away from kinks ----------------------------------------
def away_from(values: np.ndarray, points: list[float], gap: float = 1e-3) -> np.ndarray:
    """Nudge entries within ``gap`` of a kink (ReLU at 0, Softplus at its threshold) away."""
    for point in points:
        close = np.abs(values - point) < gap
        values = np.where(close, point + 2 * gap, values)
    return values


def distinct(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Values at least 0.8 apart, so a max never changes hands within one finite-difference step."""
    size = int(np.prod(shape))
    return (rng.permutation(size) + 0.1 * rng.random(size)).reshape(shape) / size * 4 - 2


def hinge_logits(n: int, k: int, y: np.ndarray, margin: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Logits whose hinge terms margin - x[y] + x[i] all stay clear of zero."""
    while True:
        logits = rng.standard_normal((n, k))
        terms = margin - logits[np.arange(n), y][:, None] + logits
        terms[np.arange(n), y] = 1.0
        if np.min(np.abs(terms)) > 1e-3:
            return logits


def _reseed(seed: int) -> Callable[[Layer], None]:
    """Give every Dropout the same fresh Generator before each forward: an identical mask."""
    def reset(layer: Layer) -> None:
        for sub in getattr(layer, "layers", [layer]):
            if isinstance(sub, Dropout):
                sub.rng = np.random.default_rng(seed)
    return reset


def _bn_eval(make: Callable[[], Layer], rng: np.random.Generator) -> Callable[[], Layer]:
    """A BatchNorm with random running statistics, for the evaluation-mode case."""
    def build() -> Layer:
        layer = make()
        n = layer.num_features
        layer.buffers["running_mean"][...] = rng.standard_normal(n)
        layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, n)
        layer.params["weight"][...] = rng.uniform(0.5, 1.5, n)
        layer.params["bias"][...] = rng.standard_normal(n)
        return layer
    return build


def _lenet16(rng: np.random.Generator) -> Sequential:
    """The layers of cnnlab's LeNet at 16x16 (16 -> 12 -> 6 -> 2 -> 1), checked as one network."""
    return Sequential(Conv2d(1, 6, 5, rng=rng), BatchNorm2d(6), ReLU(), Dropout(0.3, rng=rng), MaxPool2d(2),
                      Conv2d(6, 16, 5, rng=rng), ReLU(), MaxPool2d(2), Flatten(), Linear(16, 10, rng=rng))


def layer_cases(rng: np.random.Generator) -> list[Case]:
    """Every layer type, several geometries each."""
    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape)

    def lr() -> np.random.Generator:  # each layer gets its own stream for its initial weights
        return np.random.default_rng(rng.integers(2**32))

    softplus_x = away_from(rng.uniform(-6, 24, (3, 4, 5)), [20.0])
    sharp_x = away_from(rng.uniform(-4, 6, (3, 4, 5)), [2.5])
    return [
        Case("Conv2d k3 s1 p1", lambda g=lr(): Conv2d(3, 4, 3, padding=1, rng=g), r(2, 3, 7, 9)),
        Case("Conv2d k(3,5) s2 p(2,1)",
             lambda g=lr(): Conv2d(2, 3, (3, 5), stride=2, padding=(2, 1), rng=g),
             r(2, 2, 9, 8)),
        Case("Conv2d k5 s1 p0 batch1", lambda g=lr(): Conv2d(2, 3, 5, rng=g), r(1, 2, 9, 7)),
        Case("Conv2d k3 s2 p0 odd", lambda g=lr(): Conv2d(3, 2, 3, stride=2, rng=g),
             r(3, 3, 8, 11)),
        Case("Conv2d k1 s1 xavier", lambda g=lr(): Conv2d(3, 2, 1, init="xavier_uniform", rng=g),
             r(2, 3, 5, 5)),
        Case("MaxPool2d k2 odd", lambda: MaxPool2d(2), distinct((2, 3, 7, 9), rng)),
        Case("MaxPool2d k3 s2 overlap", lambda: MaxPool2d(3, stride=2),
             distinct((2, 2, 9, 8), rng)),
        Case("MaxPool2d k2 batch1", lambda: MaxPool2d(2), distinct((1, 2, 6, 6), rng)),
        Case("AvgPool2d k2 odd", lambda: AvgPool2d(2), r(2, 3, 7, 9)),
        Case("AvgPool2d k3 s2 overlap", lambda: AvgPool2d(3, stride=2), r(2, 2, 9, 8)),
        Case("Linear", lambda g=lr(): Linear(7, 5, rng=g), r(3, 7)),
        Case("Linear batch1 kaiming", lambda g=lr(): Linear(6, 4, init="kaiming", rng=g), r(1, 6)),
        Case("ReLU", ReLU, away_from(r(3, 4, 5), [0.0])),
        Case("LeakyReLU", lambda: LeakyReLU(0.1), away_from(r(3, 4, 5), [0.0])),
        Case("Sigmoid", Sigmoid, 3 * r(3, 4, 5)),
        Case("Tanh", Tanh, 2 * r(3, 4, 5)),
        Case("Softplus", Softplus, softplus_x),
        Case("Softplus beta2 thr5", lambda: Softplus(beta=2.0, threshold=5.0), sharp_x),
        Case("BatchNorm1d (N,C)", lambda: BatchNorm1d(4), r(5, 4)),
        Case("BatchNorm1d (N,C,L)", lambda: BatchNorm1d(3), r(4, 3, 5)),
        Case("BatchNorm2d", lambda: BatchNorm2d(2), r(3, 2, 5, 7)),
        Case("BatchNorm2d batch1", lambda: BatchNorm2d(3), r(1, 3, 4, 5)),
        Case("BatchNorm2d eval", _bn_eval(lambda: BatchNorm2d(3), rng), r(2, 3, 4, 5),
             training=False),
        Case("Dropout p0.3 fixed mask", lambda: Dropout(0.3), r(4, 3, 5),
             before_forward=_reseed(7)),
        Case("Flatten", Flatten, r(2, 3, 4, 5)),
        Case("Sequential LeNet 16x16", lambda g=lr(): _lenet16(g),
             r(2, 1, 16, 16), before_forward=_reseed(11), joint=True),
    ]


def run_gradcheck(seed: int = 0, verbose: bool = True) -> dict[str, float]:
    """Check all layers and losses; return the largest relative error per case."""
    rng = np.random.default_rng(seed)
    results: dict[str, float] = {}
    rows: list[tuple[str, dict[str, float]]] = []
    for case in layer_cases(rng):
        errors = check_layer(case, rng)
        rows.append((case.name, errors))
    y = rng.integers(0, 5, 4)
    loss_cases = [
        ("SoftmaxCrossEntropy", SoftmaxCrossEntropy(), 3 * rng.standard_normal((4, 5))),
        ("SoftmaxCrossEntropy ls0.1", SoftmaxCrossEntropy(0.1), 3 * rng.standard_normal((4, 5))),
        ("MultiClassHinge", MultiClassHinge(), hinge_logits(4, 5, y, 1.0, rng)),
        ("MultiClassHinge m0.5", MultiClassHinge(0.5), hinge_logits(4, 5, y, 0.5, rng)),
    ]
    for name, loss, logits in loss_cases:
        rows.append((name, check_loss(loss, logits, y)))
    for name, errors in rows:
        results[name] = max(errors.values())
    if verbose:
        print(format_table(rows))
    return results


def format_table(rows: list[tuple[str, dict[str, float]]]) -> str:
    """Text table: case, per-gradient errors, the largest one and a verdict."""
    width = max(len(name) for name, _ in rows)
    lines = [f"{'case':<{width}}  {'max rel err':>11}  ok   gradients",
             "-" * (width + 40)]
    for name, errors in rows:
        worst = max(errors.values())
        detail = ", ".join(f"{k}={v:.1e}" for k, v in errors.items())
        verdict = "yes" if worst <= TOLERANCE else "NO "
        lines.append(f"{name:<{width}}  {worst:>11.2e}  {verdict}  {detail}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: exit status 1 when any relative error exceeds the tolerance."""
    parser = argparse.ArgumentParser(prog="python -m cnnlab.scratch.gradcheck",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="random seed for shapes' contents")
    parser.add_argument("--quiet", action="store_true", help="print only the verdict")
    args = parser.parse_args(argv)
    results = run_gradcheck(seed=args.seed, verbose=not args.quiet)
    failed = [name for name, err in results.items() if err > TOLERANCE]
    if failed:
        print(f"FAILED (> {TOLERANCE:g}): {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"all {len(results)} gradient checks passed (max relative error "
          f"{max(results.values()):.2e} <= {TOLERANCE:g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
