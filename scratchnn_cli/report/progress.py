"""The live displays: training's Rich progress bar with the epoch cost (or plain lines in logs),
and a sweep's bar of points done with the best point so far."""

from __future__ import annotations

import math
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from scratchnn_cli.config import TrainConfig
from scratchnn_cli.training.snapshot import EpochRecord

SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 24) -> str:
    """The last ``width`` values as a row of block characters (low = ▁, high = █)."""
    values = [v for v in values[-width:] if math.isfinite(v)]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = hi - lo or 1.0
    return "".join(SPARK[min(7, int((v - lo) / span * 8))] for v in values)


def planned_updates(cfg: TrainConfig, n_train: int) -> int:
    """The most updates training can make: max_iterations, or max_epochs if that comes first."""
    batch = cfg.rows_per_update(n_train)
    if cfg.max_epochs is None:
        return cfg.max_iterations
    return min(cfg.max_iterations, cfg.max_epochs * math.ceil(n_train / batch))


class TrainingProgress:
    """Context manager and epoch callback showing epoch, updates / max, cost J (with a
    sparkline), validation cost and accuracy with the best so far, elapsed time and ETA.

    On a terminal it draws a Rich progress bar; elsewhere (CI logs, pipes) it prints a plain
    line at most every ``plain_every`` seconds, plus the first and the last epoch. For a quiet
    console (``Console(quiet=True)``: a sweep's sub-runs) it renders nothing at all.
    """

    def __init__(
        self, console: Console, cfg: TrainConfig, n_train: int, title: str, plain_every: float = 5.0
    ) -> None:
        self.console = console
        self.total = planned_updates(cfg, n_train)
        self.title = title
        self.plain_every = plain_every
        self.quiet = console.quiet
        self.live = console.is_terminal and not self.quiet
        self._progress: Progress | None = None
        self._task = None
        self._last_plain = 0.0
        self._last: EpochRecord | None = None
        self._printed: EpochRecord | None = None
        self._costs: list[float] = []
        self._best_val: float | None = None

    def __enter__(self) -> TrainingProgress:
        if self.quiet:
            return self
        if self.live:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=24),
                TaskProgressColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.title, total=self.total, status="")
        else:
            self.console.print(f"training {self.title}: up to {self.total:,} updates")
        return self

    def _status(self, r: EpochRecord) -> str:
        text = f"epoch {r.epoch}  upd {r.iteration:,}  J {r.cost:.5g} {sparkline(self._costs)}"
        if r.val_accuracy is not None:
            text += f"  val J {r.val_cost:.4g} acc {r.val_accuracy:.4f} (best {self._best_val:.4f})"
        return text

    def __call__(self, record: EpochRecord) -> None:
        if self.quiet:
            return
        self._last = record
        self._costs.append(record.cost)
        if record.val_accuracy is not None:
            self._best_val = max(self._best_val or 0.0, record.val_accuracy)
        if self._progress is not None:
            self._progress.update(
                self._task, completed=record.iteration, status=self._status(record)
            )
            return
        now = time.monotonic()
        if record.epoch == 1 or now - self._last_plain >= self.plain_every:
            self._plain(record)
            self._last_plain = now

    def _plain(self, record: EpochRecord) -> None:
        self._printed = record
        line = (
            f"epoch {record.epoch:>6}  upd {record.iteration:>10,}/{self.total:,}"
            f"  J {record.cost:.6g}"
        )
        if record.val_accuracy is not None:
            line += f"  val J {record.val_cost:.5g}  val acc {record.val_accuracy:.4f}"
        self.console.print(f"{line}  {record.seconds:7.1f}s", highlight=False, soft_wrap=True)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)
        elif self._last is not None and self._printed is not self._last:
            self._plain(self._last)


class SweepProgress:
    """Context manager: a sweep's bar (points done of ``total``, elapsed time, the best point so
    far) and, above it, a line for each point or sub-run that did not complete."""

    def __init__(self, console: Console, name: str, total: int) -> None:
        self._progress = Progress(
            TextColumn("[bold]sweep {task.fields[name]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[best]}", markup=False),
            console=console,
            transient=False,
        )
        self._bar = self._progress.add_task("sweep", total=total, name=name, best="")

    def __enter__(self) -> SweepProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def point_done(self, best: str) -> None:
        """One more point finished; ``best`` describes the best point so far."""
        self._progress.update(self._bar, advance=1, best=best)

    def say(self, line: str) -> None:
        """A line above the bar, printed as it is (no markup, no highlighting)."""
        self._progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
