"""A learning curve (`mode: learning_curve`): the study metric against the training-set size, per
curve (the base, or every combination of the axes), with a power-law fit and the size it predicts
for a target.

Each size is a nested, seeded, stratified subset (data.train_per_class / train_fraction,
data/split.py: for one seed the smaller set lies inside the larger), drawn after the validation
split, so every size of a seed is measured on the same images. What is fitted is the error
(1 - accuracy; a loss or calibration error as it is) of every completed run:

    error(n) = a * n^(-b) + c        (c: the error no amount of data removes)

by scipy.optimize.curve_fit (bounded least squares, a > 0, 0 <= b <= 4, 0 <= c <= the lowest error
seen), whose covariance gives the 95% band (delta method, t with runs - 3 degrees of freedom) and,
by sampling the parameters from it, the interval of the size that reaches the target. With fewer
than four sizes, or when the floor is not identified (c at a bound, or an infinite covariance),
the fit is error(n) = a * n^(-b), and the outputs say so. A size beyond the largest one measured
(or below the smallest) is an extrapolation, and the answer says that too.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnlab.studies.plan import Plan
from cnnlab.studies.spec import SIZE_KEYS, size_key
from cnnlab.studies.stats import (
    Comparison,
    Summary,
    compare,
    holm,
    stein_compare,
    stein_summary,
    summarize,
)
from cnnlab.studies.table import (
    OK,
    fmt_num,
    fmt_p,
    metric_label,
    shown_metric,
    source_metric,
    value_of,
)

LEVEL = 0.95
B_MAX = 4.0  # an exponent above this is no power law a learning curve shows
DRAWS = 4000  # parameter draws for the interval of the size that reaches the target


# ----------------------------------------------------------------------------- the fit


def _law(n: np.ndarray, a: float, b: float, c: float = 0.0) -> np.ndarray:
    return a * np.power(n, -b) + c


@dataclass
class Fit:
    """A fitted power law with its covariance: error(n) = a n^-b (+ c)."""

    params: np.ndarray  # (a, b) or (a, b, c)
    cov: np.ndarray
    dof: int  # points - parameters
    points: int
    note: str  # which model, and why (the floor dropped)

    @property
    def floor(self) -> bool:
        return len(self.params) == 3

    def formula(self, metric: str = "error") -> str:
        return f"{metric} = a·n^(-b) + c" if self.floor else f"{metric} = a·n^(-b)"

    def predict(self, n: Any) -> np.ndarray:
        return _law(np.asarray(n, dtype=float), *self.params)

    def band(self, n: Any) -> tuple[np.ndarray, np.ndarray]:
        """The 95% confidence band of the fitted curve at n (delta method on the covariance)."""
        from scipy import stats

        n = np.asarray(n, dtype=float)
        a, b = self.params[:2]
        grad = [np.power(n, -b), -a * np.power(n, -b) * np.log(n)]
        if self.floor:
            grad.append(np.ones_like(n))
        g = np.stack(grad, axis=-1)
        se = np.sqrt(np.maximum(np.einsum("...i,ij,...j->...", g, self.cov, g), 0.0))
        q = float(stats.t.ppf(0.5 + LEVEL / 2, max(self.dof, 1)))
        mean = self.predict(n)
        return mean - q * se, mean + q * se

    def size_for(self, target: float) -> tuple[float, float, float]:
        """(n, low, high): the size whose fitted error is `target`, and a 95% interval from parameter
        draws (inf: the target is at or below the floor; high is inf when more than 2.5% of the
        draws never reach it)."""
        n = _solve(self.params, target)
        rng = np.random.default_rng(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a draw with a non-positive-definite cov
            draws = rng.multivariate_normal(self.params, self.cov, size=DRAWS, method="svd")
        sizes = np.array([_solve(p, target) for p in draws])
        low, high = np.quantile(sizes, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], method="inverted_cdf")  # inf stays inf
        return n, float(low), float(high)

    def to_json(self) -> dict[str, Any]:
        names = ["a", "b", "c"][: len(self.params)]
        return {"model": self.formula(), "note": self.note, "points": self.points, "dof": self.dof,
                "params": dict(zip(names, map(float, self.params))),
                "stderr": dict(zip(names, map(float, np.sqrt(np.diag(self.cov))))),
                "cov": self.cov.tolist()}


def _solve(params: np.ndarray, target: float) -> float:
    a, b = params[:2]
    c = params[2] if len(params) == 3 else 0.0
    if a <= 0 or b <= 0 or target <= c:
        return math.inf
    log_n = math.log(a / (target - c)) / b
    return math.inf if log_n > 700 else math.exp(log_n)  # a draw with b near 0: beyond any float


def fit_power_law(sizes: list[float], errors: list[float]) -> Fit | None:
    """error = a n^-b + c fitted to every run (size, error); the two-parameter law when there are
    fewer than four sizes or the floor is not identified. None: too few points to fit at all."""
    from scipy.optimize import curve_fit

    x, y = np.asarray(sizes, dtype=float), np.asarray(errors, dtype=float)
    keep = np.isfinite(y) & (y > 0)
    x, y = x[keep], y[keep]
    distinct = len(np.unique(x))
    if distinct < 2 or len(x) < 3:
        return None
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)  # a straight line in log-log: the start
    b0 = float(np.clip(-slope, 0.05, B_MAX - 0.05))
    a0 = float(math.exp(intercept))
    note = ""
    if distinct >= 4 and len(x) >= 5:
        floor_hi = float(y.min())
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p, cov = curve_fit(_law, x, y, p0=[a0, b0, 0.5 * floor_hi], maxfev=20000,
                                   bounds=([0.0, 0.0, 0.0], [np.inf, B_MAX, floor_hi]))
            at_bound = p[2] <= 1e-9 or p[2] >= floor_hi * (1 - 1e-6) or p[1] >= B_MAX * (1 - 1e-6)
            if np.all(np.isfinite(cov)) and not at_bound:
                return Fit(p, cov, len(x) - 3, len(x), "with a floor c, the error no amount of data removes")
            note = (f"no floor: the floor c is not identified by these sizes (fitted at {p[2]:.4g}, "
                    f"{'a bound' if at_bound else 'infinite variance'}), so c = 0")
        except (RuntimeError, ValueError) as e:
            note = f"no floor: the three-parameter fit failed ({str(e).splitlines()[0]}), so c = 0"
    else:
        note = f"no floor: {distinct} sizes are too few to fit a floor c as well (4 needed), so c = 0"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p, cov = curve_fit(lambda n, a, b: _law(n, a, b), x, y, p0=[a0, b0], maxfev=20000,
                               bounds=([0.0, 0.0], [np.inf, B_MAX]))
    except (RuntimeError, ValueError):
        return None
    if not np.all(np.isfinite(cov)):
        return None
    return Fit(p, cov, len(x) - 2, len(x), note)


# ----------------------------------------------------------------------------- the curves


@dataclass
class Point:
    """One size of one curve: its runs' errors (by seed, fold) and their summary."""

    size: int | float
    values: dict[Hashable, float]
    summary: Summary
    comparison: Comparison | None = None  # against the first curve at this size (two or more curves)
    p_holm: float | None = None


@dataclass
class Curve:
    label: str
    points: list[Point]
    fit: Fit | None = None
    answer: tuple[float, float, float] | None = None  # size_for(target)


@dataclass
class LearningCurve:
    """Everything the learning-curve outputs show."""

    metric: str  # what is fitted, as shown: val_error, val_loss
    study_metric: str  # as recorded: val_acc, val_loss
    per_class: bool  # sizes are images per class (else fractions of the training split)
    sizes: list[int | float]
    curves: list[Curve]
    target: float | None  # in the fitted metric's units (an error, or a loss)
    target_given: bool  # the study file's target: (else the default)
    stein: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def unit(self) -> str:
        return "images per class" if self.per_class else "fraction of the training split"

    def size_text(self, n: float) -> str:
        if self.per_class:
            return f"{n:,.0f}" if n < 1e7 else f"{n:.2g}"
        return f"{n:.3g}"

    def target_text(self) -> str:
        accuracy = source_metric(self.metric) != self.metric
        if accuracy:
            words = metric_label(self.study_metric).replace(" (%)", "")
            return f"{(1 - self.target) * 100:.2f}% {words} ({self.target * 100:.2f}% error)"
        return f"{metric_label(self.metric)} {self.target:.4g}"

    def answers(self) -> list[str]:
        """One sentence per curve: about how much data the target takes, extrapolation said."""
        if self.target is None:
            return ["Learning curve: no completed runs yet to fit."]
        how = "" if self.target_given else " (default target: 10% less error than the best mean at the largest size)"
        out = []
        for c in self.curves:
            name = f" {c.label}" if len(self.curves) > 1 else ""
            if c.fit is None or c.answer is None:
                out.append(f"Learning curve{name}: too few completed runs to fit a power law.")
                continue
            n, low, high = c.answer
            if not math.isfinite(n):
                floor = f" (its floor c = {fmt_num(self.metric, c.fit.params[2])})" if c.fit.floor else ""
                out.append(f"Learning curve{name}: the fit{floor} never reaches {self.target_text()}{how}.")
                continue
            top = "no upper bound" if not math.isfinite(high) else self.size_text(high)
            largest, smallest = max(self.sizes), min(self.sizes)
            if n > largest:
                where = (f"extrapolated beyond the largest size measured ({self.size_text(largest)}): "
                         "a prediction, not a measurement")
            elif n < smallest:
                where = f"extrapolated below the smallest size measured ({self.size_text(smallest)})"
            else:
                where = "within the sizes measured"
            unit = self.unit if self.per_class else "of the training split"
            out.append(f"Learning curve{name}: about {self.size_text(n)} {unit} (95% CI {self.size_text(low)} "
                       f"to {top}) for {self.target_text()}{how}; {where}. Fit: {c.fit.formula(self.metric)} "
                       f"({c.fit.note}).")
        return out

    # ------------------------------------------------------------------ outputs

    def _size_heading(self) -> str:
        return "images per class" if self.per_class else "fraction of train"

    def to_markdown(self, title: str) -> str:
        k = metric_label(self.metric)
        others = self.curves[1:]
        head = [self._size_heading()]
        for c in self.curves:
            name = f"{c.label}: " if len(self.curves) > 1 else ""
            head += [f"{name}{k}", "95% CI", "n", "fit [95% band]"]
        for c in others:
            head += [f"Δ {c.label} vs {self.curves[0].label}", "p (Holm)"]
        lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "--:|" * len(head)]
        for i, size in enumerate(self.sizes):
            cells = [self.size_text(size)]
            for c in self.curves:
                p = c.points[i]
                cells += [_mean_std(self.metric, p.summary), _ci(self.metric, p.summary), str(p.summary.n),
                          _fit_cell(self.metric, c.fit, size)]
            for c in others:
                p = c.points[i]
                cmp = p.comparison
                diff = fmt_num(self.metric, cmp.diff, signed=True) if cmp and cmp.diff is not None else "n/a"
                star = "*" if p.p_holm is not None and p.p_holm < 0.05 else ""
                cells += [diff, f"{fmt_p(p.p_holm)}{star}" if p.p_holm is not None else "n/a"]
            lines.append("| " + " | ".join(cells) + " |")
        if self.stein:
            ci = "95% CI Stein's (adaptive seeds: spread from the pilot seeds)"
        else:
            ci = "95% CI of the mean (t distribution)"
        legend = (f"{k} against the training-set size ({self.unit}; nested, seeded, stratified subsets drawn after "
                  f"the validation split). Mean ± sample std over the n completed runs (seeds); {ci}. fit: the "
                  "power law fitted to every run, with its 95% confidence band (delta method on curve_fit's "
                  "covariance).")
        if others:
            test = "Stein's t-test" if self.stein else "paired t-test (Welch's when the seeds differ)"
            legend += (f" Δ: difference from {self.curves[0].label} at the same size; p: {test}, Holm-corrected over "
                       "every size and curve; * p < 0.05.")
        fits = []
        for c in self.curves:
            if c.fit is not None:
                names = ["a", "b", "c"][: len(c.fit.params)]
                se = np.sqrt(np.diag(c.fit.cov))
                values = ", ".join(f"{n} = {v:.4g} ± {s:.2g}" for n, v, s in zip(names, c.fit.params, se))
                fits.append(f"Fit {c.label}: {c.fit.formula(self.metric)}, {values} (± 1 standard error; "
                            f"{c.fit.points} runs; {c.fit.note}).")
        return "\n".join(lines) + "\n\n" + legend + "\n\n" + "\n\n".join(fits + self.answers()) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["curve", "size", "n", f"{self.metric}_mean", "std", "ci_low", "ci_high", "fit", "fit_low",
                    "fit_high", "diff_vs_first", "p", "p_holm", "test"])
        for c in self.curves:
            for p in c.points:
                s = p.summary
                fit = [""] * 3
                if c.fit is not None:
                    lo, hi = c.fit.band([p.size])
                    fit = [repr(float(c.fit.predict([p.size])[0])), repr(float(lo[0])), repr(float(hi[0]))]
                cmp = p.comparison or Comparison(None, None, None)
                w.writerow([c.label, p.size, s.n, _raw(s.mean), _raw(s.std), _raw(s.ci_low), _raw(s.ci_high), *fit,
                            _raw(cmp.diff), _raw(cmp.p), _raw(p.p_holm), cmp.test or ""])
        return buf.getvalue()

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric, "study_metric": self.study_metric, "unit": self.unit, "sizes": self.sizes,
            "target": self.target, "target_given": self.target_given, "answers": self.answers(),
            "curves": [{"label": c.label, "fit": c.fit.to_json() if c.fit else None,
                        "size_for_target": None if c.answer is None else
                        dict(zip(("n", "low", "high"), (v if math.isfinite(v) else None for v in c.answer))),
                        "points": [{"size": p.size, "n": p.summary.n, "mean": p.summary.mean,
                                    "ci": [p.summary.ci_low, p.summary.ci_high]} for p in c.points]}
                       for c in self.curves],
        }


def _raw(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def _mean_std(metric: str, s: Summary) -> str:
    if s.mean is None:
        return "n/a"
    return fmt_num(metric, s.mean) + (f" ± {fmt_num(metric, s.std)}" if s.std is not None else "")


def _ci(metric: str, s: Summary) -> str:
    return "n/a" if s.ci_low is None else f"[{fmt_num(metric, s.ci_low)}, {fmt_num(metric, s.ci_high)}]"


def _fit_cell(metric: str, fit: Fit | None, size: float) -> str:
    if fit is None:
        return "n/a"
    lo, hi = fit.band([size])
    return f"{fmt_num(metric, float(fit.predict([size])[0]))} [{fmt_num(metric, float(lo[0]))}, {fmt_num(metric, float(hi[0]))}]"


def fitted_metric(plan: Plan) -> str:
    """The study metric as an error (val_acc -> val_error); losses and calibration errors as they are."""
    return shown_metric(plan.study.spec.metric, "error")


def analyse(plan: Plan, rows: list[dict[str, Any]], pilot: set[Any] | None = None) -> LearningCurve:
    """The learning curve of the study's results rows: points, fits, comparisons and answers."""
    study = plan.study
    metric = fitted_metric(plan)
    sizes = list(study.sizes)
    curves: list[Curve] = []
    for label in dict.fromkeys(v.curve for v in plan.variants):
        points = []
        for size in sizes:
            variant = next(v for v in plan.variants if v.curve == label and v.size == size)
            values = {(r.get("seed"), r.get("fold")): value_of(r, metric) for r in rows
                      if r["variant"] == variant.label and r["status"] in OK and value_of(r, metric) is not None}
            summary = summarize(list(values.values())) if pilot is None else stein_summary(values, pilot)
            points.append(Point(size, values, summary))
        xs = [p.size for p in points for _ in p.values]
        ys = [v for p in points for v in p.values.values()]
        curves.append(Curve(str(label), points, fit_power_law(xs, ys)))
    if len(curves) > 1:
        others = [(c, i) for c in curves[1:] for i in range(len(sizes))]
        for c, i in others:
            a, b = c.points[i].values, curves[0].points[i].values
            c.points[i].comparison = compare(a, b) if pilot is None else stein_compare(a, b, pilot)
        for (c, i), p in zip(others, holm([c.points[i].comparison.p for c, i in others])):
            c.points[i].p_holm = p
    target, given = _target(plan, metric, curves)
    for c in curves:
        if c.fit is not None and target is not None:
            c.answer = c.fit.size_for(target)
    return LearningCurve(metric, study.spec.metric, size_key(study) == SIZE_KEYS[0], sizes, curves, target, given,
                         pilot is not None)


def _target(plan: Plan, metric: str, curves: list[Curve]) -> tuple[float | None, bool]:
    """The target as the fitted metric (an accuracy target becomes an error); by default 10% less
    error than the best mean at the largest size."""
    given = plan.study.spec.target
    if given is not None:
        return (1.0 - given if source_metric(metric) != metric else given), True
    last = [c.points[-1].summary.mean for c in curves if c.points[-1].summary.mean is not None]
    return (0.9 * min(last), False) if last else (None, False)
