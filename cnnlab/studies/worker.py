"""The worker loop shared by every mode: take a trial, run its runs, record the result.

Any number of these run at once, in one or many processes on one or many machines, all
against the same storage; a worker ends when nothing is waiting and no other live worker
holds a trial that might still need a retry. With adaptive seeds the runs wanted grow as
results arrive (adaptive.py): every tidy of the queue recomputes them from the storage, so the
worker that finishes a pilot enqueues the seeds it asks for, and a worker waiting on another's
trial picks them up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from cnnlab.callbacks import Callback, StopTraining
from cnnlab.lease import Heartbeat
from cnnlab.studies.adaptive import results_by_key, wanted_units
from cnnlab.studies.execute import run_unit
from cnnlab.studies.plan import Plan, Unit, search_variant, trial_key
from cnnlab.studies.spec import Param, choice_value, epoch_metric
from cnnlab.studies.store import Store, key_of
from cnnlab.studies.table import OK

# How often a worker with nothing to take looks again while another holds a trial: at a study's end the
# command waits on it (a tidy of the queue reads the storage: milliseconds).
POLL_S = 0.5


@dataclass
class Claim:
    """A trial this process now runs: its number, key and runs (and Optuna handle for search)."""

    number: int
    key: str
    units: list[Unit]
    trial: optuna.Trial | None = None


class Worker:
    """Runs trials of one study until none are left."""

    def __init__(self, plan: Plan, store: Store, folder: Path, on_result: Callable[[], None],
                 say: Callable[[str], None] = print):
        self.plan, self.store, self.folder = plan, store, folder
        self.on_result, self.say = on_result, say
        self.study = plan.study

    # ------------------------------------------------------------------ loop

    def run(self) -> int:
        """Work until the study is complete; returns the number of trials this worker ran."""
        ran = 0
        try:
            while True:
                claim = self._next()
                if claim is None:
                    if self.store.live_elsewhere(self.store.trials()):
                        time.sleep(POLL_S)  # another worker may die and leave its trial to us
                        continue
                    return ran
                self._run_claim(claim)
                ran += 1
                self.on_result()
        except KeyboardInterrupt:
            if self.store.holding is not None:  # claimed, running, or between the two
                self.store.release(self.store.holding, "interrupted by the user (Ctrl-C)")
            raise

    def prepare(self) -> None:
        """Tidy the queue: finish abandoned trials, enqueue every key without a result."""
        store = self.store
        for note in store.reclaim(store.trials()):
            self.say(note)
        store.ensure_queued(store.trials(), self._wanted(store.trials()))

    def _next(self) -> Claim | None:
        """Tidy the queue, then claim one trial."""
        store = self.store
        self.prepare()
        while True:
            trials = store.trials()
            if self.study.mode == "search":
                if not any(t.state == TrialState.WAITING for t in trials) and self._budget_used(trials):
                    return None
                trial = store.claim_new()
                claim = self._search_claim(trial)
                if claim is None:
                    continue
            else:
                frozen = store.pop(trials)
                if frozen is None:
                    return None
                claim = self._grid_claim(frozen)
                if claim is None:
                    continue
            owner = store.duplicate_of(store.storage.get_trial(store.tid(claim.number)))
            if owner is not None:
                store.drop_duplicate(claim.number, owner)
                continue
            return claim

    def _wanted(self, trials: list[FrozenTrial]) -> dict[str, dict[str, Any]]:
        """Keys that must end with a result: every planned run, or every search trial begun."""
        if self.study.mode != "search":
            units = (wanted_units(self.plan, results_by_key(trials)) if self.study.seed_rule is not None
                     else self.plan.units)
            return {u.key: {} for u in units}
        wanted: dict[str, dict[str, Any]] = {}
        for t in trials:
            if "duplicate" not in t.user_attrs and "over_budget" not in t.user_attrs:
                wanted[key_of(t)] = dict(t.params) or wanted.get(key_of(t), {})
        return wanted

    def _budget_used(self, trials: list[FrozenTrial]) -> bool:
        return len(self._search_keys(trials)) >= self.study.spec.search.n_trials

    def _search_keys(self, trials: list[FrozenTrial]) -> list[str]:
        """Search keys in the order they began (the first n_trials of them are the study)."""
        first: dict[str, int] = {}
        for t in trials:
            if "duplicate" in t.user_attrs or "over_budget" in t.user_attrs:
                continue
            first.setdefault(key_of(t), t.number)
        return sorted(first, key=first.get)

    def _grid_claim(self, frozen: FrozenTrial) -> Claim | None:
        unit = self.plan.unit_by_key().get(key_of(frozen))
        if unit is None:  # queued by an earlier version of the study file
            self.store.drop_duplicate(frozen.number, -1)
            return None
        return Claim(frozen.number, unit.key, [unit])

    def _search_claim(self, trial: optuna.Trial) -> Claim | None:
        key = trial.user_attrs.get("key") or trial_key(trial.number)
        if "key" not in trial.user_attrs:
            trial.set_user_attr("key", key)
            keys = self._search_keys(self.store.trials())
            if key not in keys[: self.study.spec.search.n_trials]:
                # Workers asked for the last trials at the same moment; the earliest ones count.
                trial.set_user_attr("over_budget", True)
                self.store.storage.set_trial_state_values(self.store.tid(trial.number), TrialState.FAIL)
                return None
        params = {p.name: _suggest(trial, p) for p in self.study.params}
        variant = search_variant(self.study, key, params)
        units = [Unit(variant, s, f) for s in self.plan.seeds for f in self.plan.folds]
        return Claim(trial.number, key, units, trial)

    # ------------------------------------------------------------------ one trial

    def _run_claim(self, claim: Claim) -> None:
        rows = []
        with Heartbeat(lambda: self.store.beat(claim.number)):
            for i, unit in enumerate(claim.units):
                cfg = self.plan.run_config(unit.variant.overrides, unit.seed, unit.fold, unit.run_name)
                callbacks = [self._pruning(claim.trial, i, cfg.train.epochs)] if claim.trial is not None else []
                run_dir = self.folder / "runs" / unit.run_name
                row = run_unit(cfg, run_dir, callbacks)
                # A run that failed while being built (bad model for this input) has no folder.
                row.update(key=unit.key, seed=unit.seed, fold=unit.fold,
                           run=f"runs/{unit.run_name}" if run_dir.is_dir() else "")
                rows.append(row)
                self.say(self._line(unit, row))
                if row["status"] not in OK:
                    break  # a search trial stops at its first pruned or failed run
        result = self._result(rows, len(claim.units))
        if not self.store.finish(claim.number, result):
            self.say(f"trial {claim.number} ({claim.key}) was taken over by another worker; its result is not recorded")

    def _pruning(self, trial: optuna.Trial, unit_index: int, epochs: int) -> Pruning:
        """Report each epoch's metric to Optuna; stop the run when the pruner says so."""
        return Pruning(trial, epoch_metric(self.study.spec.metric), unit_index * epochs,
                       self.study.spec.search.pruner)

    def _result(self, rows: list[dict[str, Any]], planned: int) -> dict[str, Any]:
        """What the storage keeps for a trial: its rows, and the value Optuna ranks it by."""
        statuses = [r["status"] for r in rows]
        metric = self.study.spec.metric
        if any(s in ("failed", "diverged") for s in statuses):
            state = "FAIL"
        elif "pruned" in statuses:
            state = "PRUNED"
        else:
            state = "COMPLETE"
        values = [r.get(metric) for r in rows]
        value = None
        if state == "COMPLETE" and len(rows) == planned and all(v is not None for v in values):
            value = float(sum(values) / len(values))
        return {"state": state, "value": value, "rows": rows}

    def _line(self, unit: Unit, row: dict[str, Any]) -> str:
        metric = self.study.spec.metric
        fold = f" fold {unit.fold}" if unit.fold is not None else ""
        value = row.get(metric)
        shown = f" {metric} {value:.4f}" if isinstance(value, float) else ""
        wall = f" ({row['wall_seconds']:.0f} s)" if row.get("wall_seconds") is not None else ""
        extra = " (finished before, reused)" if row.get("reused") else ""
        reason = f": {row['reason']}" if row["status"] in ("failed", "diverged") and row.get("reason") else ""
        return f"{unit.variant.label} seed {unit.seed}{fold}: {row['status']}{shown}{wall}{extra}{reason}"


class Pruning(Callback):
    """A search trial's callback: each epoch's metric to Optuna, and a stop when its pruner says so."""

    def __init__(self, trial: optuna.Trial, metric: str, offset: int, pruner: str):
        self.trial, self.metric, self.offset, self.pruner = trial, metric, offset, pruner

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        value = metrics.get(self.metric)
        if value is None or not math.isfinite(value):
            return
        self.trial.report(value, step=self.offset + epoch)
        if self.trial.should_prune():
            raise StopTraining("pruned", f"pruned by the {self.pruner} pruner after epoch {epoch} "
                                         f"({self.metric} {value:.4f})")


def _suggest(trial: optuna.Trial, p: Param) -> Any:
    """Sample (or, for a re-queued trial, read back) one search dimension."""
    if p.kind == "categorical":
        return trial.suggest_categorical(p.name, [choice_value(lv) for lv in p.choices])
    if p.kind == "int":
        return trial.suggest_int(p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
    return trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)

