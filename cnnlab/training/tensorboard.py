"""train.tensorboard: TensorBoard event files in RUN_DIR/tb/, written through torch's SummaryWriter.

What lands there:
  step/train_loss     the training loss of every optimizer step (x: the step, from 1)
  epoch/<metric>      every number of the epoch's metrics.jsonl line: lr, train/val/test loss,
                      accuracy and top-5, seconds (x: the epoch)
  hparams             the resolved config as hyperparameters and the run's final numbers
                      (hparams/<metric>), written once the run has ended (not when interrupted:
                      `cnnlab resume` ends it later)

A callback of the one training loop (cnnlab.Callback): after each epoch it writes that epoch's
steps and numbers and flushes, so a live `tensorboard --logdir runs` follows the run; at the run's
end it writes the hparams and closes the file. How far it has written travels in last.pt
(state_key), so a resumed run appends where the last one left off. A study's
runs all sit under studies/NAME/runs/, so `tensorboard --logdir studies/NAME` compares them.
"""

from __future__ import annotations

from typing import Any

from cnnlab.callbacks import CALLBACKS, Callback, RunContext

SKIPPED = ("epoch",)  # the x axis itself


@CALLBACKS.register("tensorboard")
def tensorboard() -> TensorBoardLog:
    """TensorBoard event files in RUN_DIR/tb/: every step's loss, every epoch's metrics, hparams at the end
    (also written train.tensorboard: true)."""
    return TensorBoardLog()


def hparam_values(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The config flattened to dotted keys with values TensorBoard's hparams take (numbers, text, bools)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(hparam_values(value, name + "."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:  # None, lists (augment ops, channels): their text
            out[name] = str(value)
    return out


def final_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The run's headline numbers for the hparams table: the selected epoch's, the bests and the last epoch's."""
    out: dict[str, float] = {}
    for key in ("val_acc", "test_acc", "val_top5", "test_top5"):
        if isinstance(summary.get(key), (int, float)):
            out[f"hparams/{key}"] = float(summary[key])
    for key, best in (summary.get("best") or {}).items():
        if isinstance(best, dict) and isinstance(best.get("value"), (int, float)):
            out[f"hparams/best_{key}"] = float(best["value"])
    for key, value in (summary.get("final") or {}).items():
        if key.endswith(("_loss", "_acc", "_top5")) and isinstance(value, (int, float)):
            out[f"hparams/final_{key}"] = float(value)
    return out


class TensorBoardLog(Callback):
    """Writes a run's curves as TensorBoard scalars; see the module docstring."""

    state_key = "tensorboard"

    def __init__(self) -> None:
        self.steps = 0  # step losses written so far
        self.epochs = 0  # epochs written so far
        self.run: RunContext | None = None
        self._writer: Any = None

    # -- the loop's hooks

    def on_run_start(self, run: RunContext) -> None:
        self.run = run if run.writes else None  # rank 0 alone writes event files in a distributed run

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        if self.run is None:
            return
        self._write_steps()
        self._write_epoch(metrics)
        self.writer().flush()

    def on_run_end(self, status: str, summary: dict[str, Any]) -> None:
        """After the run: what the loop did not hand over (an epoch another callback stopped
        before this one ran, a diverged epoch's steps), then the hparams, then the file is closed."""
        if self.run is None:
            return
        for metrics in self.run.history:
            if metrics["epoch"] > self.epochs:
                self._write_epoch(metrics)
        if status != "interrupted":  # resume replays the unfinished epoch's steps itself
            self._write_steps()
        if status not in ("interrupted", "running"):
            self._write_hparams(status, summary)
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def state_dict(self) -> dict[str, int]:
        return {"steps": self.steps, "epochs": self.epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.epochs = int(state["steps"]), int(state["epochs"])

    # -- writing

    def writer(self) -> Any:
        if self._writer is None:
            # imports tensorboard: only when asked for
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.run.files.tensorboard_dir))  # type: ignore[union-attr]
        return self._writer

    def _write_steps(self) -> None:
        losses = self.run.step_losses if self.run is not None else []
        w = self.writer()
        for i in range(self.steps, len(losses)):
            w.add_scalar("step/train_loss", losses[i], i + 1)
        self.steps = max(self.steps, len(losses))

    def _write_epoch(self, metrics: dict[str, Any]) -> None:
        w = self.writer()
        epoch = int(metrics["epoch"])
        for key, value in metrics.items():
            if key not in SKIPPED and isinstance(value, (int, float)) and not isinstance(value, bool):
                w.add_scalar(f"epoch/{key}", value, epoch)
        self.epochs = max(self.epochs, epoch)

    def _write_hparams(self, status: str, summary: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        values = {**hparam_values(self.run.config), "status": status}  # type: ignore[union-attr]
        metrics = final_metrics(summary)
        w = self.writer()
        experiment, start, end = hparams(values, metrics)
        for event in (experiment, start, end):
            w.file_writer.add_summary(event)
        for key, value in metrics.items():
            w.add_scalar(key, value, self.epochs)
