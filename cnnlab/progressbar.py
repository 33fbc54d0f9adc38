"""A transient Rich progress bar on stderr for long work (a landscape grid, an lr sweep);
nothing at all when stderr is not a terminal, so logs and tests stay clean."""

from __future__ import annotations

import sys
from typing import Any


class Bar:
    """`with Bar("landscape", 545, loss="-") as bar: bar.advance(loss="1.6439")`: one task,
    the named fields shown after the counter."""

    def __init__(self, label: str, total: int, **fields: str):
        self.progress: Any = None
        if not sys.stderr.isatty():
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        shown = "  ".join(f"{k} {{task.fields[{k}]}}" for k in fields)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn(shown), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=Console(file=sys.stderr), transient=True)
        self.task = self.progress.add_task(label, total=total, **fields)

    def __enter__(self) -> Bar:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def advance(self, description: str | None = None, **fields: str) -> None:
        if self.progress is not None:
            extra = {"description": description} if description is not None else {}
            self.progress.update(self.task, advance=1, **extra, **fields)
