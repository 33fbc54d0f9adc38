"""Adaptive seeds (`seeds: {min, max, precision}`): how many seeds each variant runs, decided from
the results in the storage alone, so that any number of workers, and a study killed and run again,
agree on it.

The rule is Stein's two-stage procedure (stats.py). Every variant runs the `min` pilot seeds. Once
its pilot, and the reference's, has finished, the pilot's spread of the study metric (and of the
paired difference from the reference) fixes how many seeds the variant needs:
N = max(min, ceil((t(n0-1) s_pilot / precision)^2)), capped at max. The reference (the base of an
ablation, or of a grid that contains it) runs as many seeds as any variant compared with it, so
every difference stays paired over the variant's N seeds. N depends on the pilot's spreads only,
never on a mean or on the sign of a difference, and the table's CIs and p-values take their
spread from the pilot too: under normal noise they are exact (tests/test_study_adaptive.py checks
the false-positive rate by simulation). A learning curve has no reference: each point's own mean
decides.

Because N only grows as results arrive (a pilot's results never change), the wanted runs grow
monotonically: a worker that finds nothing waiting recomputes them and enqueues what is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial

from cnnlab.studies.plan import Plan, Unit, Variant, run_key
from cnnlab.studies.spec import SeedRule
from cnnlab.studies.stats import stein_seeds
from cnnlab.studies.store import winners
from cnnlab.studies.table import OK


@dataclass(frozen=True)
class SeedCount:
    """How many seeds a variant runs (the first `wanted` of the plan's seeds) and why."""

    wanted: int
    reason: str  # for the table: "pilot running", "precision: ...", "max ..."
    decided: bool  # False while its pilot (or the reference's) is still running
    needed: int | None = None  # what the precision asked for (above max when max stopped it)


def reference(plan: Plan) -> Variant | None:
    """The variant differences are taken from: the base (none in a learning curve)."""
    if plan.study.mode == "learning_curve":
        return None
    return next((v for v in plan.variants if v.is_base), None)


def results_by_key(trials: list[FrozenTrial]) -> dict[str, list[dict[str, Any]]]:
    """Each finished run's result rows, by run key (the one trial per key the results show)."""
    return {key: t.user_attrs["result"]["rows"] for key, t in winners(trials).items()}


def pilot_seeds(plan: Plan) -> list[int]:
    rule = plan.study.seed_rule
    assert rule is not None
    return plan.seeds[: rule.min]


def metric_values(plan: Plan, results: dict[str, list[dict[str, Any]]], key: str,
                  seeds: list[int]) -> dict[int, float]:
    """{seed: the study metric} of the completed runs of the variant keyed `key` among `seeds`."""
    metric = plan.study.spec.metric
    out = {}
    for s in seeds:
        for r in results.get(run_key(key, s, None), []):
            value = r.get(metric)
            if r.get("status") in OK and isinstance(value, (int, float)) and math.isfinite(value):
                out[s] = float(value)
    return out


def spread(values: list[float]) -> float:
    """Sample standard deviation (n >= 2)."""
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def needed(samples: list[list[float]], rule: SeedRule) -> SeedCount:
    """Stein's N for the largest of these pilot samples' needs (a variant's values, its paired
    differences from the reference), capped at rule.max."""
    if any(len(x) < 2 for x in samples):
        return SeedCount(rule.max, f"max {rule.max}: fewer than 2 pilot runs completed", True)
    if any(spread(x) == 0 for x in samples):  # identical pilot values: a spread of 0 plans nothing
        return SeedCount(rule.max, f"max {rule.max}: the pilot's spread is 0", True)
    n = max(stein_seeds(spread(x), len(x), rule.precision) for x in samples)
    n = max(n, rule.min)
    if n > rule.max:
        return SeedCount(rule.max, f"max {rule.max} (±{rule.precision:g} needs {n})", True, n)
    return SeedCount(n, f"precision ±{rule.precision:g}", True, n)


def seed_counts(plan: Plan, results: dict[str, list[dict[str, Any]]]) -> dict[str, SeedCount]:
    """Every variant's seed count, by label, from the finished results alone."""
    rule = plan.study.seed_rule
    assert rule is not None
    pilot = pilot_seeds(plan)
    ref = reference(plan)
    keys = {v.label: v.key for v in plan.variants}  # a key is a digest of the overrides: computed once

    def finished(v: Variant) -> bool:
        return all(run_key(keys[v.label], s, None) in results for s in pilot)

    counts: dict[str, SeedCount] = {}
    for v in plan.variants:
        if v is ref:
            continue
        if not finished(v) or (ref is not None and not finished(ref)):
            counts[v.label] = SeedCount(rule.min, "pilot running", False)
            continue
        own = metric_values(plan, results, keys[v.label], pilot)
        samples = [list(own.values())]
        if ref is not None:
            base = metric_values(plan, results, keys[ref.label], pilot)
            samples.append([own[s] - base[s] for s in pilot if s in own and s in base])
        counts[v.label] = needed(samples, rule)
    if ref is not None:
        if not finished(ref):
            counts[ref.label] = SeedCount(rule.min, "pilot running", False)
        else:
            own_count = needed([list(metric_values(plan, results, keys[ref.label], pilot).values())], rule)
            paired = max((c.wanted for c in counts.values()), default=0)
            if paired > own_count.wanted:
                own_count = SeedCount(paired, "paired with the variants", True, own_count.needed)
            counts[ref.label] = own_count
    return counts


def wanted_units(plan: Plan, results: dict[str, list[dict[str, Any]]]) -> list[Unit]:
    """The runs the study wants now: each variant's first `wanted` seeds."""
    counts = seed_counts(plan, results)
    return [Unit(v, s, None) for v in plan.variants for s in plan.seeds[: counts[v.label].wanted]]


def stop_notes(plan: Plan, results: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """The table's "seeds" cell per variant: how many it runs and why it stopped there."""
    out = {}
    for label, c in seed_counts(plan, results).items():
        out[label] = f"{c.wanted}: {c.reason}" if c.decided else f"{c.wanted}+: {c.reason}"
    return out


def outlier_notes(plan: Plan, results: dict[str, list[dict[str, Any]]], level: float = 0.05) -> list[str]:
    """Seeds run after the pilot whose study metric falls outside the pilot's prediction interval
    (Bonferroni over every such run in the study, at family-wise `level`), one line per variant.

    Stein's CIs and p-values take their spread from the pilot alone: a later seed far outside it (a
    run that collapsed, say) leaves them too narrow without a sign in the numbers. Under the normal
    noise the procedure assumes, a warning comes up with probability at most `level` per study."""
    from cnnlab.studies.stats import t_quantile

    pilot = pilot_seeds(plan)
    later_seeds = plan.seeds[len(pilot):]
    checks = []
    for v in plan.variants:
        before = list(metric_values(plan, results, v.key, pilot).values())
        after = metric_values(plan, results, v.key, later_seeds)
        if len(before) >= 2 and after:
            checks.append((v, before, after))
    m = sum(len(after) for _, _, after in checks)
    notes = []
    for v, before, after in checks:
        n0, mean, sd = len(before), sum(before) / len(before), spread(before)
        half = t_quantile(1 - level / (2 * m), n0 - 1) * sd * math.sqrt(1 + 1 / n0)
        lo, hi = mean - half, mean + half
        out = [f"seed {s} {x:.4f}" for s, x in after.items() if not lo <= x <= hi]
        if out:
            notes.append(f"Adaptive seeds, {v.label}: {plan.study.spec.metric} of {', '.join(out)} outside the "
                         f"{100 * (1 - level):g}% prediction interval of its {n0} pilot seeds [{lo:.4f}, {hi:.4f}] "
                         f"(Bonferroni over the study's {m} later runs). Stein's CI and p take their spread from the "
                         "pilot and are too narrow if later seeds are noisier: look at those runs, or rerun with "
                         "more pilot seeds (seeds.min).")
    return notes
