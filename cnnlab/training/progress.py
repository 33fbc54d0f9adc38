"""What a training run prints: a Rich bar per epoch on a terminal and in a Jupyter notebook (Rich's
notebook display, through ipywidgets), one plain line per epoch elsewhere."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def format_epoch(m: dict[str, Any], epochs: int, eval_tag: str = "", notes: list[str] | None = None) -> str:
    """One line summing up an epoch's metrics; eval_tag marks how splits were evaluated (ema, tta)."""
    l2 = f" (+l2 {m['train_l2']:.4f})" if "train_l2" in m else ""
    parts = [f"epoch {m['epoch']}/{epochs}", f"lr {m['lr']:.3g}",
             f"train loss {m['train_loss']:.4f}{l2} acc {m['train_acc'] * 100:.2f}%"]
    tag = f" ({eval_tag})" if eval_tag else ""
    for split in ("val", "test"):
        if f"{split}_acc" in m:
            text = f"{split}{tag} loss {m[f'{split}_loss']:.4f} acc {m[f'{split}_acc'] * 100:.2f}%"
            if m.get(f"{split}_top5") is not None:
                text += f" top5 {m[f'{split}_top5'] * 100:.2f}%"
            parts.append(text)
    parts += notes or []
    parts.append(f"{m['seconds']:.1f}s")
    return "  ".join(parts)


def in_notebook() -> bool:
    """Running in a Jupyter kernel (a notebook, JupyterLab, VS Code, Colab)."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class Reporter:
    """Progress of a run; silent when quiet (study workers), plain when not on a terminal.
    `bars`: the per-epoch progress bar (None: on a terminal or in a notebook; False: plain lines)."""

    def __init__(self, epochs: int, steps_per_epoch: int, stream: TextIO | None = None, quiet: bool = False,
                 bars: bool | None = None):
        self.epochs = epochs
        self.steps = steps_per_epoch
        notebook = in_notebook()
        # In a notebook the lines go to stdout: stderr shows as a warning there.
        self.stream = stream or (sys.stdout if notebook else sys.stderr)
        self.quiet = quiet
        self.live = not quiet and (bars if bars is not None else (self.stream.isatty() or notebook))
        self._progress: Progress | None = None
        self._task = None

    def message(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    def start_epoch(self, epoch: int, done: int = 0) -> None:
        if self.live:
            self._progress = Progress(
                TextColumn(f"epoch {epoch}/{self.epochs}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(),
                console=Console(file=self.stream), transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("train", total=self.steps, completed=done, loss="-")

    def advance(self, loss: float | None = None) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1, loss="-" if loss is None else f"{loss:.4f}")

    def end_epoch(self, metrics: dict[str, Any], eval_tag: str = "", notes: list[str] | None = None) -> None:
        self.close()
        self.message(format_epoch(metrics, self.epochs, eval_tag, notes))

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
