"""Ctrl-C in a study: a stop asked for after a run's last step stops the study, not the run."""

from __future__ import annotations

import pytest
from conftest import write_config

pytestmark = pytest.mark.slow


def test_ctrl_c_after_a_study_runs_last_step_stops_the_study_not_the_run(tmp_path, mnist_small):
    """A Ctrl-C that lands after a run's last step (its last evaluation, its files) used to be lost:
    the run completed and the study went on to its next run."""
    import os
    import signal

    from cnnlab.callbacks import Callback
    from cnnlab.errors import Interrupted
    from cnnlab.resolve import load_config
    from cnnlab.rundir import Run
    from cnnlab.training import runner

    class CtrlCInLastEpoch(Callback):
        def on_epoch_end(self, epoch: int, metrics: dict) -> None:
            if epoch == 2:
                os.kill(os.getpid(), signal.SIGINT)  # after the last step: the run has nothing left to stop

    cfg = load_config(write_config(tmp_path / "c.yaml", {"format": "idx", "path": str(mnist_small), "limit_train": 120},
                                   train={"epochs": 2, "batch_size": 40}))
    with pytest.raises(Interrupted) as stopped:
        runner.train(cfg, run_dir=tmp_path / "in_a_study", quiet=True, callbacks=[CtrlCInLastEpoch()], shared=True)
    assert stopped.value.signum == signal.SIGINT and Run(tmp_path / "in_a_study").summary["status"] == "completed"
    alone = runner.train(cfg, run_dir=tmp_path / "alone", quiet=True, callbacks=[CtrlCInLastEpoch()])
    assert alone.summary["status"] == "completed"  # alone, the command just ends: the run is done
