"""Study state in Optuna's storage: the queue of runs, who runs what, and every result.

Each unit of work is an Optuna trial carrying a `key` user attribute: one run for ablation
and grid (enqueued up front as WAITING trials), one sampled variant for search. A trial
is *done* once it holds a `result` attribute; a RUNNING trial whose worker is gone (see
lease.py) is failed as `lost` and its key enqueued again. When two trials share a key
(workers enqueueing or reclaiming at the same moment) the lowest-numbered one wins and the
others are failed as duplicates, so no run is recorded twice.

Storage: a journal file in the study folder by default (Optuna's JournalStorage: safe for
several processes, unlike SQLite), or any SQLAlchemy URL (postgresql://...) for workers on
several machines.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import FrozenTrial, TrialState

from cnnlab import lease
from cnnlab.errors import ConfigError, UserError
from cnnlab.studies.plan import trial_key

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

JOURNAL = "optuna-journal.log"


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C held back until the block ends, then raised: a claim is won and noted as held, or not
    won, so the worker always knows what to hand back. Only the main thread receives signals."""
    global _deferring
    if threading.current_thread() is not threading.main_thread() or _deferring:
        yield  # nested: the outer block holds the signal back and raises it at its end
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    if previous is None:  # installed outside Python: put back Python's own
        previous = signal.default_int_handler
    _deferring = True
    try:
        yield
    finally:
        _deferring = False
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


_deferring = False


class _Journal(JournalFileBackend):
    """Optuna's journal file, each append whole under Ctrl-C: interrupted between creating its lock
    file and returning (or before removing it), the lock stayed with nobody to release it, every
    process of the study waited out the grace period, and `--workers N` stopped its workers before
    they had handed their trials back (seen in tests/test_study_crash.py once workers start together)."""

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        with interrupts_deferred():
            super().append_logs(logs)


def key_of(t: FrozenTrial) -> str:
    """A trial's key; a search trial created by ask() is keyed by its own number until told."""
    return t.user_attrs.get("key") or trial_key(t.number)


def is_done(t: FrozenTrial) -> bool:
    return "result" in t.user_attrs and "duplicate" not in t.user_attrs


def storage_label(url: str | None, folder: Path) -> str:
    """Where the state lives, for messages (a password in a URL is never shown)."""
    if url is None:
        return str(folder / JOURNAL)
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def database_url(url: str) -> str:
    """Pick an installed PostgreSQL driver for a plain postgresql:// URL.

    SQLAlchemy 2.1 maps postgresql:// to psycopg 3; cnnlab depends on psycopg2-binary, so
    a bare URL uses whichever of the two is installed (psycopg 3 first)."""
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if scheme in ("postgresql", "postgres") and sep:
        driver = "psycopg" if importlib.util.find_spec("psycopg") else "psycopg2"
        return f"postgresql+{driver}://{rest}"
    return url


def make_storage(url: str | None, folder: Path, create: bool = True) -> optuna.storages.BaseStorage | None:
    """A JournalStorage on folder/optuna-journal.log, or an RDBStorage for a database URL."""
    if url is None or "://" not in url:
        path = Path(url) if url else folder / JOURNAL
        if not path.exists() and not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        # A writer killed while holding the lock only blocks the others for grace_period seconds.
        backend = _Journal(str(path), lock_obj=JournalFileOpenLock(str(path), grace_period=10))
        return optuna.storages.JournalStorage(backend)
    url = database_url(url)
    last: Exception | None = None
    for attempt in range(5):  # workers starting together may race to create the tables
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        except ImportError as e:
            raise UserError(f"--storage {storage_label(url, folder)}: a database driver is missing ({e}); "
                            "install psycopg2-binary for postgresql://") from None
        except Exception as e:  # sqlalchemy's errors: unreachable server, bad credentials, races
            last = e
            time.sleep(0.5 * (attempt + 1))
    msg = str(last).strip().splitlines()[0] if last else "unknown error"
    raise UserError(f"--storage {storage_label(url, folder)}: cannot open the database: {msg}")


@dataclass
class Progress:
    """Counts of a study's work items (runs for ablation/grid, trials for search)."""

    total: int
    done: int
    failed: int
    running: int

    @property
    def left(self) -> int:
        return max(0, self.total - self.done - self.failed - self.running)

    def line(self) -> str:
        return f"{self.done} done, {self.running} running, {self.failed} failed, {self.left} left (of {self.total})"


class Store:
    """One Optuna study used as a work queue and result store."""

    def __init__(self, storage: optuna.storages.BaseStorage, name: str, direction: str,
                 fingerprint: str, study_file: str, create: bool = True,
                 sampler: optuna.samplers.BaseSampler | None = None, pruner: optuna.pruners.BasePruner | None = None):
        self.storage = storage
        self.name = name
        # The trial this process has claimed and not yet finished: what Ctrl-C hands back, wherever
        # in the worker it lands (also between the claim and the run).
        self.holding: int | None = None
        if create:
            study = optuna.create_study(storage=storage, study_name=name, direction=direction, load_if_exists=True,
                                        sampler=sampler, pruner=pruner)
        else:
            study = optuna.load_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner)
        self.study = study
        self.study_id = storage.get_study_id_from_name(name)
        attrs = study.user_attrs
        if "fingerprint" not in attrs and create:
            study.set_user_attr("fingerprint", fingerprint)
            study.set_user_attr("study_file", study_file)
        elif attrs.get("fingerprint") not in (None, fingerprint):
            raise ConfigError(
                f"{study_file}: the base config, mode, folds or search space changed since study '{name}' "
                f"started (from {attrs.get('study_file', '?')}); its runs no longer match. Give the study a "
                "new name, or delete its folder (and its --storage entry) to start over")

    def trials(self) -> list[FrozenTrial]:
        """All trials now (through Optuna's cache of finished trials for a database)."""
        return self.study.get_trials(deepcopy=False)

    # ------------------------------------------------------------------ queue

    def reclaim(self, trials: list[FrozenTrial]) -> list[str]:
        """Finish abandoned trials: record a result that was stored, else mark them lost."""
        notes = []
        for t in trials:
            if t.state != TrialState.RUNNING:
                continue
            reason = lease.stale_reason(t.user_attrs.get("lease"), t.datetime_start)
            if reason is None:
                continue
            try:
                if is_done(t):  # killed between storing its result and telling Optuna
                    self.tell(t.number, t.user_attrs["result"])
                else:
                    self.storage.set_trial_user_attr(self.tid(t.number), "lost", reason)
                    self.storage.set_trial_state_values(self.tid(t.number), TrialState.FAIL)
                    notes.append(f"run {key_of(t)} was interrupted ({reason}); it runs again")
            except UpdateFinishedTrialError:
                pass  # another worker got there first
        return notes

    def ensure_queued(self, trials: list[FrozenTrial], wanted: dict[str, dict[str, Any]]) -> int:
        """Enqueue every wanted key that has no result and no live trial; returns how many."""
        covered = {key_of(t) for t in trials if is_done(t) or (
            "duplicate" not in t.user_attrs and "lost" not in t.user_attrs
            and t.state in (TrialState.WAITING, TrialState.RUNNING))}
        added = 0
        for key, params in wanted.items():
            if key not in covered:
                self.study.enqueue_trial(params, user_attrs={"key": key})
                added += 1
        return added

    def pop(self, trials: list[FrozenTrial]) -> FrozenTrial | None:
        """Claim the oldest WAITING trial for this process (compare-and-set in the storage).

        The lease is written only after the compare-and-set is won: written before, a loser
        would overwrite the winner's lease with its own pid (and the winner's run would be
        taken back when the loser exits). A RUNNING trial without a lease counts as alive
        for STALE_AFTER_S after it started, so the gap between the two writes is safe."""
        for t in sorted((t for t in trials if t.state == TrialState.WAITING), key=lambda t: t.number):
            trial_id = self.tid(t.number)
            try:
                with interrupts_deferred():  # won and recorded as held, or not won: never in between
                    won = self.storage.set_trial_state_values(trial_id, TrialState.RUNNING)
                    if won:
                        self.holding = t.number
                if won:
                    self.storage.set_trial_user_attr(trial_id, "lease", lease.new_lease())
                    return self.storage.get_trial(trial_id)
            except UpdateFinishedTrialError:
                continue
        return None

    def claim_new(self) -> optuna.Trial:
        """A fresh (or re-queued) search trial from Optuna's sampler, leased to this process."""
        with interrupts_deferred():
            trial = self.study.ask()
            self.holding = trial.number
        self.storage.set_trial_user_attr(self.tid(trial.number), "lease", lease.new_lease())
        return trial

    def duplicate_of(self, mine: FrozenTrial) -> int | None:
        """The trial that owns this trial's key, when it is not this one."""
        key = key_of(mine)
        for t in self.trials():
            if t.number == mine.number or key_of(t) != key or "duplicate" in t.user_attrs:
                continue
            if is_done(t):
                return t.number
            live = t.state == TrialState.WAITING or (
                t.state == TrialState.RUNNING and lease.stale_reason(t.user_attrs.get("lease"), t.datetime_start) is None)
            if live and t.number < mine.number and "lost" not in t.user_attrs:
                return t.number
        return None

    def tid(self, number: int) -> int:
        """The storage's id of trial `number`."""
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    # The methods that let a trial go do it under interrupts_deferred: a Ctrl-C between "not held any
    # more" and the trial's final state left it RUNNING with nobody to hand it back (a result stored,
    # the state not yet told: seen in tests/test_study_crash.py under load).

    def drop_duplicate(self, number: int, owner: int) -> None:
        with interrupts_deferred():
            self._let_go(number)
            trial_id = self.tid(number)
            try:
                self.storage.set_trial_user_attr(trial_id, "duplicate", owner)
                self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:
                pass

    def beat(self, number: int) -> None:
        self.storage.set_trial_user_attr(self.tid(number), "lease", lease.new_lease())

    # ------------------------------------------------------------------ results

    def finish(self, number: int, result: dict[str, Any]) -> bool:
        """Store a trial's result, then tell Optuna; False when the trial was taken from us."""
        with interrupts_deferred():
            try:
                self.storage.set_trial_user_attr(self.tid(number), "result", result)
                self.tell(number, result)
            except UpdateFinishedTrialError:
                return False
            finally:
                self._let_go(number)
        return True

    def _let_go(self, number: int) -> None:
        if self.holding == number:
            self.holding = None

    def tell(self, number: int, result: dict[str, Any]) -> None:
        """Finish trial `number` in Optuna; UpdateFinishedTrialError when it already is."""
        state = TrialState[result["state"]]
        value = result.get("value")
        if state == TrialState.COMPLETE and (value is None or not math.isfinite(value)):
            state = TrialState.FAIL
        if self.storage.get_trial(self.tid(number)).state.is_finished():
            raise UpdateFinishedTrialError(f"trial {number} is already finished")
        try:
            self.study.tell(number, value if state == TrialState.COMPLETE else None, state=state)
        except ValueError as e:  # "Cannot tell a FAIL trial": finished by another worker meanwhile
            raise UpdateFinishedTrialError(str(e)) from None

    def release(self, number: int, reason: str) -> None:
        """Give a trial back (Ctrl-C): fail it as lost so the next run of the study redoes it."""
        with interrupts_deferred():
            self._let_go(number)
            trial_id = self.tid(number)
            try:
                self.storage.set_trial_user_attr(trial_id, "lost", reason)
                self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:
                pass

    def live_elsewhere(self, trials: list[FrozenTrial]) -> int:
        """RUNNING trials whose workers are alive: wait for them, they may still need a retry."""
        return sum(1 for t in trials if t.state == TrialState.RUNNING
                   and lease.stale_reason(t.user_attrs.get("lease"), t.datetime_start) is None)


def winners(trials: list[FrozenTrial]) -> dict[str, FrozenTrial]:
    """The one done trial per key (the lowest-numbered), which the results show."""
    out: dict[str, FrozenTrial] = {}
    for t in sorted(trials, key=lambda t: t.number):
        if is_done(t) and key_of(t) not in out:
            out[key_of(t)] = t
    return out
