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

import pandas as pd
import yaml
from rich.console import Console
from rich.text import Text

from scratchnn_cli.config import load_config
from scratchnn_cli.data import data_dir
from scratchnn_cli.errors import ConfigError, DataError, one_line
from scratchnn_cli.report.tables import accuracy_text, reproduce_table
from scratchnn_cli.report.text import printable
from scratchnn_cli.runs import create_run_dir, write_text

#: How often, in seconds, the status line of the experiments training is redrawn (on a
#: terminal): the loop waits this long at most for one to finish before it looks again.
STATUS_EVERY = 1.0


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


@dataclass(frozen=True)
class Experiment:
    """One experiment of the manifest: its number and title, its config (a file of the configs
    folder), the course CSV it reads when ``$SCRATCHNN_DATA`` has it, how long it took on the
    reference machine, and the assignment's numbers."""

    id: int
    title: str
    config: str
    course_csv: str | None = None
    seconds: float = 0.0
    reported_val: float | None = None
    reported_test: float | None = None


def read_manifest(path: Path) -> list[Experiment]:
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
    return [
        Experiment(
            id=entry["id"],
            title=str(entry["title"]),
            config=str(entry["config"]),
            course_csv=entry.get("course_csv"),
            seconds=float(entry.get("seconds", 0)),
            reported_val=entry.get("reported", {}).get("val"),
            reported_test=entry.get("reported", {}).get("test"),
        )
        for entry in entries
    ]


def start_order(entries: list[Experiment]) -> list[Experiment]:
    """The longest experiments first (by the manifest's ``seconds``; ties keep their order): on
    two workers, the two longest then run side by side instead of one after the other."""
    return sorted(entries, key=lambda e: -e.seconds)


def _run_one(entry: Experiment, configs_dir: Path, out_dir: Path) -> Row:
    """Train one experiment (in a worker process, single-threaded BLAS, quiet console)."""
    from scratchnn_cli.experiment import run_experiment
    from scratchnn_cli.nn.threads import blas_threads

    overrides, data = [], "built-in"
    csv = entry.course_csv
    shared = data_dir()
    if csv and shared is not None and (shared / csv).is_file():
        overrides.append(f"data.dataset={shared / csv}")
        data = f"course CSV ({csv})"
    row = Row(
        id=entry.id,
        experiment=entry.title,
        data=data,
        reported_val=entry.reported_val,
        reported_test=entry.reported_test,
    )
    start = time.perf_counter()
    try:
        config = load_config(configs_dir / entry.config, overrides)
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
    val, test = outcome.metrics.get("val"), outcome.metrics.get("test")
    row.ours_val = val.accuracy if val else None
    row.ours_test = test.accuracy if test else None
    return row


def results_markdown(rows: list[Row], title: str) -> str:
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
        scores = " | ".join(
            map(accuracy_text, (r.reported_val, r.ours_val, r.reported_test, r.ours_test))
        )
        seconds = r.seconds if r.seconds is not None else "-"
        lines.append(
            f"| {r.id} | {r.experiment} | {r.data} | {scores} | {r.status} | {stop} "
            f"| {seconds} | {r.run_dir} |"
        )
    return "\n".join(lines) + "\n"


def _train_all(
    entries: list[Experiment], configs_dir: Path, out_dir: Path, jobs: int, console: Console
) -> list[Row]:
    """Train ``entries`` (the longest first) on ``jobs`` processes, handing a process an
    experiment only when it is free, so that each one starts when it is handed out: a line
    when one starts, one when it ends (its result and seconds), and on a terminal a status
    line of those training, with their seconds so far."""
    pending = start_order(entries)
    running: dict[Future[Row], tuple[Experiment, float]] = {}
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
                say(f"#{entry.id} {entry.title}: started")
            if live is not None:
                live.update(_training_status(running.values()))
            done, _ = wait(running, timeout=STATUS_EVERY, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: running[f][0].id):
                _, began = running.pop(future)
                row = future.result()
                rows.append(row)
                say(
                    f"#{row.id} {row.experiment}: test {accuracy_text(row.ours_test)} "
                    f"(reported {accuracy_text(row.reported_test)}) {row.status}, "
                    f"{time.perf_counter() - began:.0f} s"
                )
    return rows


def _training_status(running: Iterable[tuple[Experiment, float]]) -> Text:
    """The status line of the experiments training: ``training #8 (95 s), #4 (12 s)`` from
    (manifest entry, start time) pairs."""
    now = time.perf_counter()
    ids = ", ".join(f"#{printable(entry.id)} ({now - began:.0f} s)" for entry, began in running)
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
        out_dir / "summary.md", results_markdown(rows, f"Course assignment reproduced ({stamp})")
    )
    console.print(reproduce_table(rows, console.width))
    console.print(
        f"total {time.perf_counter() - start:.0f}s; summary in {printable(out_dir)}/summary.md",
        markup=False,
        highlight=False,
    )
    return out_dir, rows
