"""Which differences are real: means, t-based confidence intervals, t-tests, Holm's correction.

Runs of two variants pair when they share seeds (and folds): the same seed gives the same
initial weights, data order and validation split, so the paired t-test on per-seed
differences removes that shared noise. Otherwise Welch's t-test (unequal variances).
Fewer than two values give no spread and no test, and a t statistic of 0/0 (no spread at
all) has no p-value: those are None, shown as "n/a".
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

from cnnlab.lazy import lazy

stats = lazy("scipy.stats")  # a second of start-up for every study worker, needed only for tables


@dataclass(frozen=True)
class Summary:
    """n, mean, sample standard deviation and the 95% confidence interval of the mean."""

    n: int
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None


def summarize(values: list[float], level: float = 0.95) -> Summary:
    """Summary of a sample; std and CI need n >= 2."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(x)
    if n == 0:
        return Summary(0, None, None, None, None)
    mean = float(x.mean())
    if n < 2:
        return Summary(1, mean, None, None, None)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class Comparison:
    """A variant against the reference: difference of means, p-value and which test."""

    diff: float | None
    p: float | None
    test: str | None  # "paired", "Welch" or None when there is too little data


def compare(a: dict[Hashable, float], b: dict[Hashable, float]) -> Comparison:
    """Compare sample a with sample b (each keyed by seed/fold): mean(a) - mean(b) and its p-value."""
    a = {k: v for k, v in a.items() if v is not None and math.isfinite(v)}
    b = {k: v for k, v in b.items() if v is not None and math.isfinite(v)}
    if not a or not b:
        return Comparison(None, None, None)
    diff = float(np.mean(list(a.values())) - np.mean(list(b.values())))
    if set(a) == set(b) and len(a) >= 2:
        keys = sorted(a, key=repr)
        x, y = np.array([a[k] for k in keys]), np.array([b[k] for k in keys])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(stats.ttest_rel(x, y).pvalue)
        return Comparison(diff, _finite(p), "paired")
    if len(a) < 2 or len(b) < 2:
        return Comparison(diff, None, None)
    x, y = np.array(list(a.values())), np.array(list(b.values()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(x, y, equal_var=False).pvalue)
    return Comparison(diff, _finite(p), "Welch")


def _finite(p: float) -> float | None:
    return p if math.isfinite(p) else None


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None stays None), for many variants against one base."""
    index = [i for i, p in enumerate(pvalues) if p is not None]
    m = len(index)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(index, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out
