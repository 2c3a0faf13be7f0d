"""report/tables.py: reproduce's summary table and the runs table fit the width (80 columns and
less), giving up the least useful columns before a run's name is cut."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import pytest
from helpers import ROOT, render
from rich.console import Console

from scratchnn_cli.runs.listing import RunRow

# --------------------------------------------------------------------------- reproduce


def manifest_rows() -> list[Any]:
    """One summary row per experiment of configs/reproduce.yaml, with long reasons."""
    from scratchnn_cli.reproduce import Row, read_manifest

    rows = []
    for entry in read_manifest(ROOT / "configs" / "reproduce.yaml"):
        row = Row(entry.id, entry.title, "course CSV (x.csv)", 0.9, 0.95)
        if entry.id == 5:
            row.status = "skipped: fashion-mnist: not cached and the download failed: " * 3
        else:
            row.status, row.stopped_by, row.seconds = "completed", "early_stopping", 1234.5
            row.stop = "reached max_iterations = 100,000 (after 250 epochs, 100,000 updates)"
            row.ours_val, row.ours_test = 0.951, 0.972
        rows.append(row)
    return rows


@pytest.mark.parametrize("width", [80, 60])
def test_the_reproduce_table_has_one_line_per_experiment(width: int) -> None:
    from scratchnn_cli.report.tables import reproduce_table as summary_table

    rows = manifest_rows()
    printed = render(summary_table(rows, width), width)
    lines = printed.splitlines()
    assert max(len(line) for line in lines) <= width, printed
    for row in rows:
        (line,) = [line for line in lines if line.startswith(f"{row.id} ")]
        stop = "skipped" if row.id == 5 else "early stop"
        assert line.rstrip().endswith(stop) and ("0.972" in line) != (row.id == 5), line
        if width == 80:  # the manifest's names are whole at 80 columns
            assert f"{row.id} {row.experiment} " in line, line
    assert "download failed" not in printed and "after 250 epochs" not in printed
    assert "summary.md" in printed


# --------------------------------------------------------------------------- runs


def listing_rows(name: str = "20261206-065100-circles_s") -> list[dict[str, Any]]:
    """Two rows of ``scratchnn runs``: an interrupted run named ``name``, a completed one."""
    return [
        RunRow(run=name, status="interrupted", test=None, val=None, stopped_by="", age="3 d"),
        RunRow(
            run="20261206-065200-circles",
            status="completed",
            test=0.9712,
            val=0.9633,
            stopped_by="early_stopping",
            age="12 min",
        ),
    ]


@pytest.mark.parametrize("width", [100, 80, 60, 40])
def test_the_runs_table_fits_the_width(width: int) -> None:
    from scratchnn_cli.report.tables import fitted_runs_table

    rows = listing_rows()
    console = Console(width=width, file=io.StringIO())
    printed = render(fitted_runs_table(rows, "runs in runs", console), width)
    lines = printed.splitlines()
    assert max(len(line) for line in lines) <= width, printed
    completed = [line for line in lines if "completed" in line]
    assert len(completed) == 1 and "0.9712" in completed[0], printed  # status, test acc stay
    whole = width >= 60  # names whole while columns can be given up instead
    assert (rows[1].run in printed) == whole, printed
    assert ("early_stopping" in printed) == (width == 100), printed  # shortened first
    assert ("early stop" in printed) == (width == 80), printed
    assert ("val acc" in printed) == (width == 100), printed  # the least useful column
    assert ("12 min" in printed) == (width >= 80), printed  # the next


def test_a_long_run_name_gives_up_columns_before_it_is_cut() -> None:
    from scratchnn_cli.report.tables import fitted_runs_table

    rows = listing_rows("20261206-065100-fashion_shirt_sandal_deep_net")
    console = Console(width=80, file=io.StringIO())
    printed = render(fitted_runs_table(rows, "runs in runs", console), 80)
    assert max(len(line) for line in printed.splitlines()) <= 80, printed
    assert rows[0].run in printed and "interrupted" in printed
    assert "age" not in printed and "stopped by" not in printed


def test_a_sweep_folder_keeps_its_val_accuracy_at_60_columns() -> None:
    from scratchnn_cli.report.tables import fitted_runs_table

    rows = [dataclasses.replace(r, test=None, val=0.9633) for r in listing_rows()]
    console = Console(width=60, file=io.StringIO())
    printed = render(fitted_runs_table(rows, "runs in runs/sweep-x", console), 60)
    assert "val acc" in printed and "0.9633" in printed and "test acc" not in printed
