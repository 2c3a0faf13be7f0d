"""Rerun every experiment of the course assignment and put our numbers beside the reported ones.

The list of experiments and the assignment's numbers live in ``configs/reproduce.yaml``; each
experiment is an ordinary config in ``configs/``. Runs go to ``runs/reproduce-<timestamp>/``,
with ``summary.csv`` and ``summary.md`` beside them. Experiments whose data cannot be had
(Fashion-MNIST offline) are reported as skipped, with the reason.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from scratchnn_cli.config import load_config
from scratchnn_cli.data import data_dir
from scratchnn_cli.errors import ConfigError, DataError, one_line
from scratchnn_cli.report.text import cell, printable
from scratchnn_cli.runs import create_run_dir, write_text
from scratchnn_cli.runs.listing import SHORT_STOP

#: How often, in seconds, the status line of the experiments training is redrawn (on a
#: terminal): the loop waits this long at most for one to finish before it looks again.
STATUS_EVERY = 1.0
#: The narrowest an experiment's name gets in the terminal's table (with its ``…``).
MIN_NAME = 16
#: The terminal table's layouts, the roomiest first: (padding, with the seconds column). The
#: seconds are also on each experiment's finish line and in summary.md, so they go first.
TABLE_LAYOUTS = ((1, True), (0, True), (0, False))


@dataclass
class Row:
    """One line of the summary."""

    id: int
    experiment: str
    data: str
    reported_val: float | None
    reported_test: float | None
    ours_val: float | None = None
    ours_test: float | None = None
    status: str = ""
    stop: str = ""
    run_dir: str = ""
    seconds: float | None = None
    stopped_by: str = ""


MANIFEST_KEYS = ("id", "title", "config")  # what every experiment of the manifest names


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """The experiments listed in ``configs/reproduce.yaml``."""
    try:
        manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
        entries = list(manifest["experiments"])
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a reproduce manifest ({one_line(exc)})") from None
    for i, entry in enumerate(entries):
        missing = [k for k in MANIFEST_KEYS if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise ConfigError(f"{path}: experiments.{i}: needs {', '.join(missing)}")
        seconds, reported = entry.get("seconds", 0), entry.get("reported", {})
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ConfigError(f"{path}: experiments.{i}.seconds: must be a number")
        if not isinstance(reported, dict):
            raise ConfigError(f"{path}: experiments.{i}.reported: must be a mapping (val:, test:)")
    return entries


def start_order(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The longest experiments first (by the manifest's ``seconds``; ties keep their order): on
    two workers, the two longest then run side by side instead of one after the other."""
    return sorted(entries, key=lambda e: -float(e.get("seconds", 0)))


def _run_one(entry: dict[str, Any], configs_dir: Path, out_dir: Path) -> Row:
    """Train one experiment (in a worker process, single-threaded BLAS, quiet console)."""
    from scratchnn_cli.experiment import run_experiment
    from scratchnn_cli.nn.threads import blas_threads

    overrides, data = [], "built-in"
    csv = entry.get("course_csv")
    shared = data_dir()
    if csv and shared is not None and (shared / csv).is_file():
        overrides.append(f"data.dataset={shared / csv}")
        data = f"course CSV ({csv})"
    row = Row(
        id=entry["id"],
        experiment=entry["title"],
        data=data,
        reported_val=entry.get("reported", {}).get("val"),
        reported_test=entry.get("reported", {}).get("test"),
    )
    start = time.perf_counter()
    try:
        config = load_config(configs_dir / entry["config"], overrides)
        if config.data.dataset == "fashion-mnist":
            row.data = "fashion-mnist"
        with blas_threads(1):
            outcome = run_experiment(config, out_dir, console=Console(file=io.StringIO()))
    except DataError as exc:
        row.status = f"skipped: {exc}"
        return row
    except Exception as exc:  # one failed experiment must not hide the others
        row.status = f"failed: {type(exc).__name__}: {exc}"
        return row
    row.seconds = round(time.perf_counter() - start, 1)
    row.status = outcome.status
    row.stop = outcome.result.stop_reason
    row.stopped_by = outcome.result.stopped_by
    row.run_dir = str(outcome.run_dir)
    row.ours_val = outcome.metrics.get("val", {}).get("accuracy")
    row.ours_test = outcome.metrics.get("test", {}).get("accuracy")
    return row


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def summary_markdown(rows: list[Row], title: str) -> str:
    """The summary as a Markdown table."""
    lines = [
        f"# {title}",
        "",
        "| # | experiment | data | reported val | ours val | reported test | ours test | status "
        "| stop | seconds | run folder |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        stop = r.stop.replace("|", "\\|")
        lines.append(
            f"| {r.id} | {r.experiment} | {r.data} | {_fmt(r.reported_val)} | {_fmt(r.ours_val)} "
            f"| {_fmt(r.reported_test)} | {_fmt(r.ours_test)} | {r.status} | {stop} "
            f"| {r.seconds if r.seconds is not None else '-'} | {r.run_dir} |"
        )
    return "\n".join(lines) + "\n"


def short_stop(row: Row) -> str:
    """One word or two for how an experiment ended: the stop rule of a completed one
    (``max iter``, ``eps``...), else its status without the reason (``skipped``, ``failed``);
    summary.md has the whole reason."""
    if row.status == "completed" and row.stopped_by:
        return SHORT_STOP.get(row.stopped_by, row.stopped_by)
    return row.status.split(":")[0]


def summary_table(rows: list[Row], width: int) -> Table:
    """The summary as a Rich table for a terminal ``width`` columns wide, one line per
    experiment: the first of ``TABLE_LAYOUTS`` that fits, else the narrowest with the names
    cut (``…``) to the width left. The data each read is in the caption; the stop reasons
    and run folders are left to summary.md."""
    from rich.measure import Measurement

    console = Console(width=10_000)
    for padding, seconds in TABLE_LAYOUTS:
        table = _summary_table(rows, padding, seconds)
        wide = Measurement.get(console, console.options, table).maximum
        if wide <= width:
            return table
    names = max([cell_len("experiment")] + [cell_len(printable(r.experiment)) for r in rows])
    table.columns[1].max_width = max(MIN_NAME, width - (wide - names))
    return table


def _summary_table(rows: list[Row], padding: int, seconds: bool) -> Table:
    """The terminal's summary table: ``padding`` spaces each side of a cell (beside the one
    between columns), with or without the ``seconds`` column."""
    table = Table(
        title="course assignment: reported vs ours (accuracy)",
        caption=_data_caption(rows),
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, padding),
        collapse_padding=True,
    )
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("experiment", no_wrap=True, overflow="ellipsis")
    for split in ("val", "test"):
        table.add_column(f"{split}\nrep.", justify="right", no_wrap=True)
        table.add_column(f"{split}\nours", justify="right", no_wrap=True)
    table.add_column("stop", no_wrap=True)
    if seconds:
        table.add_column("s", justify="right", no_wrap=True)
    for r in rows:
        cells = [str(r.id), cell(r.experiment), _fmt(r.reported_val), _fmt(r.ours_val)]
        cells += [_fmt(r.reported_test), _fmt(r.ours_test), cell(short_stop(r))]
        if seconds:
            cells.append("-" if r.seconds is None else f"{r.seconds:.0f}")
        table.add_row(*cells)
    return table


def _data_caption(rows: list[Row]) -> Text:
    """Which data each experiment read: ``data: #1 #3 course CSV (blobs400.csv); ...``, and
    where the details are."""
    ids: dict[str, list[str]] = {}
    for r in rows:
        ids.setdefault(r.data, []).append(f"#{r.id}")
    data = "; ".join(f"{' '.join(numbers)} {printable(name)}" for name, numbers in ids.items())
    return Text(f"data: {data}. Stop reasons and run folders: summary.md")


def _train_all(
    entries: list[dict[str, Any]], configs_dir: Path, out_dir: Path, jobs: int, console: Console
) -> list[Row]:
    """Train ``entries`` (the longest first) on ``jobs`` processes, handing a process an
    experiment only when it is free, so that each one starts when it is handed out: a line
    when one starts, one when it ends (its result and seconds), and on a terminal a status
    line of those training, with their seconds so far."""
    pending = start_order(entries)
    running: dict[Future[Row], tuple[dict[str, Any], float]] = {}
    rows: list[Row] = []
    start = time.perf_counter()

    def say(line: str) -> None:
        console.print(
            f"  [{time.perf_counter() - start:6.1f}s] {printable(line)}",
            markup=False,
            highlight=False,
        )

    status = console.status("") if console.is_terminal else contextlib.nullcontext()
    with ProcessPoolExecutor(max_workers=jobs) as pool, status as live:
        while pending or running:
            while pending and len(running) < jobs:
                entry = pending.pop(0)
                future = pool.submit(_run_one, entry, configs_dir, out_dir)
                running[future] = (entry, time.perf_counter())
                say(f"#{entry['id']} {entry['title']}: started")
            if live is not None:
                live.update(_training_status(running.values()))
            done, _ = wait(running, timeout=STATUS_EVERY, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: running[f][0]["id"]):
                _, began = running.pop(future)
                row = future.result()
                rows.append(row)
                say(
                    f"#{row.id} {row.experiment}: test {_fmt(row.ours_test)} (reported "
                    f"{_fmt(row.reported_test)}) {row.status}, {time.perf_counter() - began:.0f} s"
                )
    return rows


def _training_status(running: Iterable[tuple[dict[str, Any], float]]) -> Text:
    """The status line of the experiments training: ``training #8 (95 s), #4 (12 s)`` from
    (manifest entry, start time) pairs."""
    now = time.perf_counter()
    ids = ", ".join(f"#{printable(entry['id'])} ({now - began:.0f} s)" for entry, began in running)
    return Text(f"training {ids}")


def reproduce_all(
    configs_dir: Path, runs_dir: Path, jobs: int = 2, console: Console | None = None
) -> tuple[Path, list[Row]]:
    """Run every experiment of the manifest on ``jobs`` processes; write the summary files."""
    console = console or Console()
    entries = read_manifest(configs_dir / "reproduce.yaml")
    out_dir = create_run_dir(runs_dir, "reproduce", name_first=True)
    console.print(
        f"reproducing {len(entries)} experiments with {jobs} processes into {printable(out_dir)}",
        markup=False,
        highlight=False,
    )
    start = time.perf_counter()
    rows = sorted(
        _train_all(entries, configs_dir, out_dir, max(1, jobs), console), key=lambda r: r.id
    )
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
    write_text(out_dir / "summary.csv", pd.DataFrame([asdict(r) for r in rows]).to_csv(index=False))
    write_text(
        out_dir / "summary.md", summary_markdown(rows, f"Course assignment reproduced ({stamp})")
    )
    console.print(summary_table(rows, console.width))
    console.print(
        f"total {time.perf_counter() - start:.0f}s; summary in {printable(out_dir)}/summary.md",
        markup=False,
        highlight=False,
    )
    return out_dir, rows
