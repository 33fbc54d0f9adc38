"""Which differences are real: means, t-based confidence intervals, t-tests, Holm's correction.

Runs of two variants pair when they share seeds (and folds): the same seed gives the same
initial weights, data order and validation split, so the paired t-test on per-seed
differences removes that shared noise. Otherwise Welch's t-test (unequal variances).
Fewer than two values give no spread and no test, and a t statistic of 0/0 (no spread at
all) has no p-value: those are None, shown as "n/a".

With adaptive seeds (adaptive.py) the number of seeds depends on the spread of the first ones,
and an ordinary t-test on the seeds a variant ended with is no longer honest: stopping when the
spread happens to look small makes t too large (stopping on the difference's own CI width:
8% false positives at a nominal 5% in tests/test_study_adaptive.py's simulation). Stein's two-stage procedure stays exact: the mean over all N seeds,
the spread from the pilot seeds only (their n0 - 1 degrees of freedom), so the CI is
mean +- t(n0-1) s_pilot / sqrt(N) and the test statistic is t(n0-1)-distributed under the null
(stein_summary, stein_compare).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

from cnnlab.lazy import lazy

stats = lazy("scipy.stats")  # a second of start-up for every study worker, needed only for tables
special = lazy("scipy.special")  # t quantiles and tails without scipy.stats' distribution machinery (fast)


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
    half = t_quantile(0.5 + level / 2, n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


@functools.lru_cache(maxsize=1024)
def t_quantile(p: float, df: int) -> float:
    """Student's t quantile (cached: a study's tables ask for the same few again and again)."""
    return float(special.stdtrit(df, p))


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
        d = x - y
        if np.ptp(d) <= 1e-9 * max(1.0, float(np.abs(d).max())):
            # Every pair differs by the same amount (two seeds each one image apart): no spread to test
            # against; the t-test would turn float noise into p < 0.001.
            return Comparison(diff, None, "paired")
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


def stein_summary(values: dict[Hashable, float], pilot: set[Hashable], level: float = 0.95) -> Summary:
    """Summary of a sample grown by Stein's two-stage rule: mean and std over every value, the CI of
    the mean from the pilot's spread (t with n_pilot - 1 degrees of freedom, over sqrt(n))."""
    ok = {k: v for k, v in values.items() if v is not None and math.isfinite(v)}
    plain = summarize(list(ok.values()), level)
    first = [v for k, v in ok.items() if k in pilot]
    sd = float(np.std(first, ddof=1)) if len(first) >= 2 else 0.0
    if plain.mean is None or sd == 0.0:  # no pilot spread (fewer than 2, or identical): no interval
        return Summary(plain.n, plain.mean, plain.std, None, None)
    half = t_quantile(0.5 + level / 2, len(first) - 1) * sd / math.sqrt(plain.n)
    return Summary(plain.n, plain.mean, plain.std, plain.mean - half, plain.mean + half)


def stein_compare(a: dict[Hashable, float], b: dict[Hashable, float], pilot: set[Hashable]) -> Comparison:
    """a against b over the seeds both ran (paired), Stein's way: the mean difference over all those
    pairs, its spread from the pilot pairs only; p from t with n_pilot - 1 degrees of freedom."""
    a = {k: v for k, v in a.items() if v is not None and math.isfinite(v)}
    b = {k: v for k, v in b.items() if v is not None and math.isfinite(v)}
    common = sorted(set(a) & set(b), key=repr)
    if not common:
        return Comparison(None, None, None)
    d = np.array([a[k] - b[k] for k in common])
    first = np.array([a[k] - b[k] for k in common if k in pilot])
    diff = float(d.mean())
    if len(first) < 2:
        return Comparison(diff, None, None)
    sd = float(first.std(ddof=1))
    if sd == 0.0:
        return Comparison(diff, None, "Stein")
    t = diff * math.sqrt(len(d)) / sd
    return Comparison(diff, float(2 * special.stdtr(len(first) - 1, -abs(t))), "Stein")


def stein_seeds(pilot_sd: float, n_pilot: int, precision: float, level: float = 0.95) -> int:
    """Seeds Stein's rule asks for: the smallest N with t(n_pilot-1) s_pilot / sqrt(N) <= precision."""
    q = t_quantile(0.5 + level / 2, n_pilot - 1)
    return max(n_pilot, math.ceil((q * pilot_sd / precision) ** 2 - 1e-9))
