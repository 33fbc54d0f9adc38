"""The study queue on a real Optuna journal: claiming, duplicates, abandoned trials, budgets."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import yaml
from conftest import write_config
from optuna.trial import TrialState

from cnnlab import lease
from cnnlab.studies.launch import open_study
from cnnlab.studies.store import is_done, key_of, winners
from cnnlab.studies.worker import Worker


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def study_path(tmp_path, mnist_small):
    write_config(tmp_path / "base.yaml", {"format": "idx", "path": str(mnist_small)}, model={"name": "cnn", "channels": [4]})
    path = tmp_path / "q.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "mode": "grid", "out_dir": str(tmp_path / "studies"),
                                    "seeds": [0, 1], "axes": {"model.dropout": [0.1, 0.2]}}))
    return path


def worker(path) -> Worker:
    opened = open_study(path, [], None)
    return Worker(opened.plan, opened.store, opened.folder, on_result=lambda: None, say=lambda s: None)


def test_two_workers_enqueueing_at_once_run_each_key_once(study_path):
    w1, w2 = worker(study_path), worker(study_path)
    w1.prepare()
    w2.store.ensure_queued([], w2._wanted([]))  # a second machine that saw no trials yet: all enqueued twice
    trials = w1.store.trials()
    assert len(trials) == 8 and len({key_of(t) for t in trials}) == 4
    claims = []
    while True:
        claim = (w1 if len(claims) % 2 == 0 else w2)._next()
        if claim is None:
            break
        claims.append(claim)
    assert sorted(c.key for c in claims) == sorted(u.key for u in w1.plan.units)  # each key claimed once
    dropped = [t for t in w1.store.trials() if "duplicate" in t.user_attrs]
    assert len(dropped) == 4 and all(t.state == TrialState.FAIL for t in dropped)
    assert all(t.user_attrs["duplicate"] < t.number for t in dropped)  # the lowest number owns a key


def test_abandoned_trials_are_taken_back_or_finished(study_path):
    w = worker(study_path)
    w.prepare()
    store = w.store
    killed = store.pop(store.trials())  # claimed by a worker that then died (kill -9) mid-run
    recorded = store.pop(store.trials())  # died after storing its result, before telling Optuna
    alive = store.pop(store.trials())  # still running somewhere
    gone = {**lease.new_lease(), "pid": dead_pid(), "start": None}
    for t in (killed, recorded):
        store.storage.set_trial_user_attr(store.tid(t.number), "lease", gone)
    row = {"status": "completed", "val_acc": 0.5}
    store.storage.set_trial_user_attr(store.tid(recorded.number), "result",
                                      {"state": "COMPLETE", "value": 0.5, "rows": [row]})
    # A machine that stopped beating long ago, on another host.
    far = {"host": "elsewhere:0", "pid": 1, "start": None, "beat": time.time() - lease.STALE_AFTER_S - 5}
    store.storage.set_trial_user_attr(store.tid(alive.number), "lease", far)
    notes = store.reclaim(store.trials())
    assert len(notes) == 2 and "is gone" in notes[0] and "no heartbeat from elsewhere" in notes[1]
    by_number = {t.number: t for t in store.trials()}
    assert by_number[killed.number].state == TrialState.FAIL and "lost" in by_number[killed.number].user_attrs
    assert by_number[recorded.number].state == TrialState.COMPLETE and by_number[recorded.number].value == 0.5
    assert is_done(by_number[recorded.number]) and not is_done(by_number[killed.number])
    # The lost keys go back in the queue; the recorded one does not.
    assert store.ensure_queued(store.trials(), w._wanted(store.trials())) == 2
    waiting = {key_of(t) for t in store.trials() if t.state == TrialState.WAITING}
    assert key_of(killed) in waiting and key_of(alive) in waiting and key_of(recorded) not in waiting
    assert set(winners(store.trials())) == {key_of(recorded)}
    # A worker that is alive on this host keeps its trial.
    mine = store.pop(store.trials())
    assert store.reclaim(store.trials()) == [] and store.storage.get_trial(store.tid(mine.number)).state == TrialState.RUNNING


def test_a_worker_that_loses_a_claim_leaves_the_winners_lease_alone(study_path, monkeypatch):
    """Two machines pop the same WAITING trial: the loser must not write its pid into the winner's lease
    (it did, and the winner's finished run was recorded under the loser's pid)."""
    w1, w2 = worker(study_path), worker(study_path)
    w1.prepare()
    seen_by_both = w1.store.trials()
    won = w1.store.pop(seen_by_both)
    assert won.user_attrs["lease"]["pid"] == lease.new_lease()["pid"]
    other = {**lease.new_lease(), "pid": lease.new_lease()["pid"] + 1}
    monkeypatch.setattr(lease, "new_lease", lambda: dict(other))
    lost_race = w2.store.pop(seen_by_both)  # its list still shows `won` as WAITING
    assert lost_race is not None and lost_race.number != won.number
    assert w1.store.storage.get_trial(w1.store.tid(won.number)).user_attrs["lease"] == won.user_attrs["lease"]
    assert lost_race.user_attrs["lease"]["pid"] == other["pid"]


def test_a_taken_back_trial_cannot_record_a_late_result(study_path):
    w = worker(study_path)
    w.prepare()
    store = w.store
    t = store.pop(store.trials())
    store.release(t.number, "interrupted by the user (Ctrl-C)")
    assert not store.finish(t.number, {"state": "COMPLETE", "value": 0.9, "rows": []})
    assert not is_done(store.storage.get_trial(store.tid(t.number)))


def test_ctrl_c_between_the_claim_and_the_run_hands_the_trial_back(study_path, monkeypatch):
    """Ctrl-C once landed after a worker had claimed a trial but before it started the run: the trial
    stayed RUNNING (a flaky crash test). The store now knows what this process holds."""
    w = worker(study_path)

    def interrupted(*args):
        raise KeyboardInterrupt  # what SIGINT raises at that point

    monkeypatch.setattr(w, "_grid_claim", interrupted)
    with pytest.raises(KeyboardInterrupt):
        w.run()
    trials = w.store.trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert [t.user_attrs["lost"] for t in trials if "lost" in t.user_attrs] == ["interrupted by the user (Ctrl-C)"]
    assert w.store.holding is None


def test_a_sigint_during_a_claim_is_raised_after_it(study_path):
    """The claim itself runs with Ctrl-C held back: won and noted as held, then interrupted."""
    import signal

    from cnnlab.studies.store import interrupts_deferred

    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            reached = True  # the signal did not cut the block short
    assert reached
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_sigint_while_a_result_is_stored_leaves_no_trial_running(study_path, monkeypatch):
    """A Ctrl-C between storing a trial's result and telling Optuna left it RUNNING and not held (a
    flaky Ctrl-C study test under load): storing a result, and the journal's appends, are whole."""
    import signal

    w = worker(study_path)
    w.prepare()
    store = w.store
    t = store.pop(store.trials())
    real = store.tell

    def tell_after_a_sigint(number, result):
        os.kill(os.getpid(), signal.SIGINT)  # arrives between the two writes
        time.sleep(0.05)
        real(number, result)

    monkeypatch.setattr(store, "tell", tell_after_a_sigint)
    with pytest.raises(KeyboardInterrupt):  # raised once the result is stored and told
        store.finish(t.number, {"state": "COMPLETE", "value": 0.9, "rows": []})
    assert store.holding is None
    assert store.storage.get_trial(store.tid(t.number)).state == TrialState.COMPLETE
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_search_trials_stop_at_the_budget(tmp_path, mnist_small):
    write_config(tmp_path / "base.yaml", {"format": "idx", "path": str(mnist_small)}, model={"name": "cnn", "channels": [4]})
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "mode": "search", "out_dir": str(tmp_path / "studies"),
                                    "search": {"n_trials": 2, "sampler": "random",
                                               "params": {"optim.lr": {"low": 0.01, "high": 0.1, "log": True}}}}))
    w1, w2 = worker(path), worker(path)
    c1, c2 = w1._next(), w2._next()
    assert (c1.key, c2.key) == ("t0000", "t0001") and w1._next() is None
    assert 0.01 <= c1.units[0].variant.overrides["optim.lr"] <= 0.1
    # A third worker that asked at the same moment as the second: its trial is over the budget.
    extra = w2.store.claim_new()
    assert w2._search_claim(extra) is None
    t = w2.store.storage.get_trial(w2.store.tid(extra.number))
    assert t.state == TrialState.FAIL and t.user_attrs["over_budget"] is True
    assert w1._search_keys(w1.store.trials()) == ["t0000", "t0001"]


def test_old_temporaries_of_killed_commands_are_removed(tmp_path):
    import os

    from cnnlab.studies.launch import _remove_stale_temporaries

    old, fresh, kept = tmp_path / ".results.csv.a1.tmp", tmp_path / ".table.md.b2.tmp", tmp_path / "results.csv"
    for p in (old, fresh, kept):
        p.write_text("x")
    os.utime(old, (time.time() - 600, time.time() - 600))
    os.utime(kept, (time.time() - 600, time.time() - 600))
    _remove_stale_temporaries(tmp_path)
    assert not old.exists() and fresh.exists() and kept.exists()


def test_a_worker_whose_study_command_died_while_it_started_exits():
    """The study command was killed while its worker was still importing torch: the worker is
    init's child by the time it looks, so it must watch the pid it was started by, not getppid()."""
    code = "from cnnlab.lease import exit_with_parent; exit_with_parent(poll=0.05); import time; time.sleep(30)"
    env = {**os.environ, lease.PARENT_ENV: str(dead_pid())}
    started = time.monotonic()
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=60).returncode == 75
    assert time.monotonic() - started < 20
    # With the study command alive (this test), the worker keeps running.
    alive = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, lease.PARENT_ENV: str(os.getpid())})
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            alive.wait(timeout=3)
    finally:
        alive.kill()
        alive.wait()
