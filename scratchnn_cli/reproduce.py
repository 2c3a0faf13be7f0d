"""Rerun every experiment of the course assignment and put our numbers beside the reported ones.

The list of experiments and the assignment's numbers live in ``configs/reproduce.yaml``; each
experiment is an ordinary config in ``configs/``. Runs go to ``runs/reproduce-<timestamp>/``,
with ``summary.csv`` and ``summary.md`` beside them. Experiments whose data cannot be had
(Fashion-MNIST offline) are reported as skipped, with the reason.
"""

from __future__ import annotations

import io
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from scratchnn_cli.config import load_config
from scratchnn_cli.data import data_dir
from scratchnn_cli.errors import ConfigError, DataError, one_line
from scratchnn_cli.runs import create_run_dir, write_text


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


def _short_stop(row: Row) -> str:
    if row.status not in ("completed", "diverged"):
        return row.status
    return row.stop.split(":")[0]


def summary_table(rows: list[Row]) -> Table:
    """The summary as a Rich table for the terminal."""
    table = Table(title="course assignment: reported vs ours (accuracy)")
    for name in ("#", "experiment", "data", "val rep.", "val ours", "test rep.", "test ours"):
        table.add_column(name, justify="right" if name not in ("experiment", "data") else "left")
    table.add_column("status / stop")
    table.add_column("s", justify="right")
    for r in rows:
        table.add_row(
            str(r.id),
            r.experiment,
            r.data,
            _fmt(r.reported_val),
            _fmt(r.ours_val),
            _fmt(r.reported_test),
            _fmt(r.ours_test),
            _short_stop(r),
            "-" if r.seconds is None else f"{r.seconds:.0f}",
        )
    return table


def reproduce_all(
    configs_dir: Path, runs_dir: Path, jobs: int = 2, console: Console | None = None
) -> tuple[Path, list[Row]]:
    """Run every experiment of the manifest on ``jobs`` processes; write the summary files."""
    console = console or Console()
    entries = read_manifest(configs_dir / "reproduce.yaml")
    out_dir = create_run_dir(runs_dir, "reproduce", name_first=True)
    console.print(f"reproducing {len(entries)} experiments with {jobs} processes into {out_dir}")
    rows: list[Row] = []
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(_run_one, e, configs_dir, out_dir): e for e in start_order(entries)}
        for future in as_completed(futures):
            row = future.result()
            rows.append(row)
            console.print(
                f"  [{time.perf_counter() - start:6.1f}s] #{row.id} {row.experiment}: "
                f"test {_fmt(row.ours_test)} (reported {_fmt(row.reported_test)}) {row.status}",
                highlight=False,
            )
    rows.sort(key=lambda r: r.id)
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
    write_text(out_dir / "summary.csv", pd.DataFrame([asdict(r) for r in rows]).to_csv(index=False))
    write_text(
        out_dir / "summary.md", summary_markdown(rows, f"Course assignment reproduced ({stamp})")
    )
    console.print(summary_table(rows), width=max(console.width, 150))  # logs: no squeezing
    console.print(f"total {time.perf_counter() - start:.0f}s; summary in {out_dir}/summary.md")
    return out_dir, rows
