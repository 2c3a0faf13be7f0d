"""The live displays: training's live line (epoch, cost, ETA, accuracy, bar...: as many as the
terminal's width holds, the most useful first), or plain lines with the ETA in logs; and a
sweep's bar of points done with the best point so far."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from scratchnn_cli.config import TrainConfig
from scratchnn_cli.records import EpochRecord
from scratchnn_cli.report.text import printable

SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 24) -> str:
    """The last ``width`` values as a row of block characters (low = ▁, high = █)."""
    values = [v for v in values[-width:] if math.isfinite(v)]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = hi - lo or 1.0
    return "".join(SPARK[min(7, int((v - lo) / span * 8))] for v in values)


def total_updates(cfg: TrainConfig, n_train: int) -> int:
    """The most updates training can make: max_iterations, or max_epochs if that comes first."""
    batch = cfg.rows_per_update(n_train)
    if cfg.max_epochs is None:
        return cfg.max_iterations
    return min(cfg.max_iterations, cfg.max_epochs * math.ceil(n_train / batch))


#: The live line's bar: as wide as this when the terminal has room, down to ``BAR_MIN`` when it is
#: narrow (a shorter bar says too little), and dropped below that.
BAR_WIDTH = 24
BAR_MIN = 10
#: Between two fields of the live line.
SEPARATOR = "  "


@dataclass(frozen=True)
class Field:
    """One part of the live line: ``text(width)`` at any width from ``min_width`` to
    ``max_width`` (only the bar stretches), and its ``rank``: when the terminal is too narrow
    for every field, the lowest ranks are kept (1 first; among equals, the first shown)."""

    rank: int
    text: Callable[[int], Text]
    min_width: int
    max_width: int


def fixed(rank: int, text: str, style: str = "") -> Field:
    """A field of one width: ``text`` in ``style``."""
    return Field(rank, lambda _width: Text(text, style=style), cell_len(text), cell_len(text))


def fit_line(fields: list[Field], width: int) -> Text:
    """The fields that fit in ``width`` columns, in their order, joined by two spaces: taken by
    rank while they fit (a wide one left out does not stop a narrower one after it), each as
    wide as it may be in the columns still free. Never wider than ``width``."""
    chosen: dict[int, int] = {}  # index -> width
    free = width
    for i in sorted(range(len(fields)), key=lambda i: fields[i].rank):
        room = free - (len(SEPARATOR) if chosen else 0)
        if fields[i].min_width <= room:
            chosen[i] = min(fields[i].max_width, room)
            free = room - chosen[i]
    line = Text(SEPARATOR).join(fields[i].text(chosen[i]) for i in sorted(chosen))
    line.truncate(width)
    line.no_wrap = True
    return line


def clock(seconds: float) -> str:
    """``seconds`` as H:MM:SS."""
    minutes, secs = divmod(int(max(0.0, seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def eta_seconds(record: EpochRecord, total: int) -> float | None:
    """How long the updates left to ``total`` take at the pace so far (the record's seconds
    per update); None before any update. An upper bound: training may stop sooner (eps,
    early stopping)."""
    if record.iteration <= 0:
        return None
    return record.seconds / record.iteration * max(0, total - record.iteration)


def bar(rank: int, fraction: float) -> Field:
    """The progress bar and its percentage, ``BAR_MIN`` to ``BAR_WIDTH`` columns of bar."""
    percent = f" {fraction:4.0%}"

    def text(width: int) -> Text:
        cols = width - len(percent)
        done = round(cols * min(1.0, max(0.0, fraction)))
        line = Text("━" * done, style="bar.finished" if fraction >= 1 else "bar.complete")
        line.append("━" * (cols - done), style="bar.back")
        line.append(percent, style="progress.percentage")
        return line

    return Field(rank, text, BAR_MIN + len(percent), BAR_WIDTH + len(percent))


def live_line(
    title: str,
    record: EpochRecord | None,
    total: int,
    costs: list[float],
    best_val: float | None,
    elapsed: float,
    eta: float | None,
    width: int,
) -> Text:
    """Training's live line, fitted to ``width`` columns: the epoch, the cost J and the ETA
    first, then the validation accuracy with the best so far, then the bar; the updates, the
    validation cost, the cost's sparkline, the elapsed time and the run's name when there is
    room. ``title`` is shown literally (``report.text.printable``)."""
    fields = [fixed(6, printable(title), "bold")]
    if record is None:
        fields += [fixed(1, "starting"), fixed(7, clock(elapsed), "progress.elapsed")]
        return fit_line(fields, width)
    fields += [
        bar(5, record.iteration / total if total else 1.0),
        fixed(1, f"epoch {record.epoch}"),
        fixed(7, f"upd {record.iteration:,}/{total:,}"),
        fixed(2, f"J {record.cost:.5g}"),
        fixed(8, sparkline(costs)),
    ]
    if record.val_accuracy is not None:
        fields.append(fixed(6, f"val J {record.val_cost:.4g}"))
        best = "" if best_val is None else f" (best {best_val:.4f})"
        fields.append(fixed(4, f"acc {record.val_accuracy:.4f}{best}"))
    fields.append(fixed(7, clock(elapsed), "progress.elapsed"))
    fields.append(fixed(3, f"ETA {'-:--:--' if eta is None else clock(eta)}", "progress.remaining"))
    return fit_line([f for f in fields if f.max_width > 0], width)


def plain_line(record: EpochRecord, total: int, eta: float | None) -> str:
    """One line of training's plain output (logs, pipes): epoch, updates, costs, validation
    accuracy, seconds so far and, while training goes on, the ETA."""
    line = f"epoch {record.epoch:>6}  upd {record.iteration:>10,}/{total:,}  J {record.cost:.6g}"
    if record.val_accuracy is not None:
        line += f"  val J {record.val_cost:.5g}  val acc {record.val_accuracy:.4f}"
    line += f"  {record.seconds:7.1f}s"
    return line if eta is None else f"{line}  ETA {clock(eta)}"


class TrainingProgress:
    """Context manager and epoch callback showing epoch, updates / max, cost J (with a
    sparkline), validation cost and accuracy with the best so far, elapsed time and ETA.

    On a terminal it draws one live line fitted to the terminal's width (``live_line``);
    elsewhere (CI logs, pipes) it prints a plain line at most every ``plain_every`` seconds,
    plus the first and the last epoch. For a quiet console (``Console(quiet=True)``: a sweep's
    sub-runs) it renders nothing at all.
    """

    def __init__(
        self, console: Console, cfg: TrainConfig, n_train: int, title: str, plain_every: float = 5.0
    ) -> None:
        self.console = console
        self.total = total_updates(cfg, n_train)
        self.title = title
        self.plain_every = plain_every
        self.quiet = console.quiet
        self.live = console.is_terminal and not self.quiet
        self._live: Live | None = None
        self._started = time.monotonic()
        self._last_plain = 0.0
        self._last: EpochRecord | None = None
        self._last_at = self._started
        self._printed: EpochRecord | None = None
        self._costs: list[float] = []
        self._best_val: float | None = None

    def __enter__(self) -> TrainingProgress:
        if self.quiet:
            return self
        self._started = time.monotonic()
        if self.live:
            self._live = Live(_LiveLine(self), console=self.console, refresh_per_second=4)
            self._live.__enter__()
        else:
            self.console.print(
                f"training {printable(self.title)}: up to {self.total:,} updates",
                markup=False,
                highlight=False,
            )
        return self

    def line(self, width: int) -> Text:
        """The live line now, ``width`` columns at most (the ETA counts down between epochs)."""
        now = time.monotonic()
        eta = None if self._last is None else eta_seconds(self._last, self.total)
        if eta is not None:
            eta = max(0.0, eta - (now - self._last_at))
        return live_line(
            self.title,
            self._last,
            self.total,
            self._costs,
            self._best_val,
            now - self._started,
            eta,
            width,
        )

    def __call__(self, record: EpochRecord) -> None:
        if self.quiet:
            return
        self._last, self._last_at = record, time.monotonic()
        self._costs.append(record.cost)
        if record.val_accuracy is not None:
            self._best_val = max(self._best_val or 0.0, record.val_accuracy)
        if self._live is not None:
            return
        now = time.monotonic()
        if record.epoch == 1 or now - self._last_plain >= self.plain_every:
            self._plain(record, eta_seconds(record, self.total))
            self._last_plain = now

    def _plain(self, record: EpochRecord, eta: float | None) -> None:
        self._printed = record
        line = plain_line(record, self.total, eta)
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
        elif self._last is not None and self._printed is not self._last:
            self._plain(self._last, None)  # training is over: no ETA


class _LiveLine:
    """The renderable a Live display redraws: its progress's line at the console's width."""

    def __init__(self, progress: TrainingProgress) -> None:
        self.progress = progress

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.progress.line(options.max_width)


class SweepProgress:
    """Context manager: a sweep's bar (points done of ``total``, elapsed time, the best point so
    far) and, above it, a line for each point or sub-run that did not complete. The sweep's
    name, the best point and the lines come from the spec: shown literally
    (``report.text.printable``), never as markup."""

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
        name = escape(printable(name))  # the column's template is markup
        self._bar = self._progress.add_task("sweep", total=total, name=name, best="")

    def __enter__(self) -> SweepProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def point_done(self, best: str) -> None:
        """One more point finished; ``best`` describes the best point so far."""
        self._progress.update(self._bar, advance=1, best=printable(best))

    def say(self, line: str) -> None:
        """A line above the bar, printed as it is (no markup, no highlighting)."""
        self._progress.console.print(printable(line), markup=False, highlight=False, soft_wrap=True)
