"""The live training display: a Rich progress bar with the epoch cost, or plain lines in logs."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from scratchnn_cli.train import EpochRecord


class TrainingProgress:
    """Context manager and epoch callback: epoch, iteration / max, cost J, elapsed, ETA.

    On a terminal it draws a Rich progress bar; elsewhere (CI logs, pipes) it prints a plain
    line at most every ``plain_every`` seconds, plus the first and last epoch.
    """

    def __init__(
        self, console: Console, max_iterations: int, title: str, plain_every: float = 5.0
    ) -> None:
        self.console = console
        self.max_iterations = max_iterations
        self.title = title
        self.plain_every = plain_every
        self.live = console.is_terminal
        self._progress: Progress | None = None
        self._task = None
        self._last_plain = 0.0
        self._last: EpochRecord | None = None
        self._printed: EpochRecord | None = None

    def __enter__(self) -> TrainingProgress:
        if self.live:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("iter {task.completed:,.0f}/{task.total:,.0f}"),
                TextColumn("epoch {task.fields[epoch]}"),
                TextColumn("J = {task.fields[cost]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(
                self.title, total=self.max_iterations, epoch=0, cost="-"
            )
        else:
            self.console.print(f"training {self.title}: up to {self.max_iterations:,} iterations")
        return self

    def __call__(self, record: EpochRecord) -> None:
        self._last = record
        if self._progress is not None:
            self._progress.update(
                self._task,
                completed=record.iteration,
                epoch=record.epoch,
                cost=f"{record.cost:.6f}",
            )
            return
        now = time.monotonic()
        if record.epoch == 1 or now - self._last_plain >= self.plain_every:
            self._plain(record)
            self._last_plain = now

    def _plain(self, record: EpochRecord) -> None:
        self._printed = record
        self.console.print(
            f"epoch {record.epoch:>6}  iter {record.iteration:>10,}/{self.max_iterations:,}"
            f"  J = {record.cost:.6f}  {record.seconds:7.1f}s",
            highlight=False,
        )

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)
        elif self._last is not None and self._printed is not self._last:
            self._plain(self._last)
