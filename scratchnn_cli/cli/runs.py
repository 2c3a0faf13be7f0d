"""``scratchnn runs``: list the run folders of a folder, one row each."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from scratchnn_cli.cli.app import handle_errors, out, say


@handle_errors
def list_runs(
    runs_dir: Annotated[Path, typer.Argument(help="The folder holding run folders.")] = Path(
        "runs"
    ),
) -> None:
    """List the runs in RUNS_DIR: status, test accuracy, stop reason and age, newest last."""
    from scratchnn_cli.runs import list_runs as find_runs

    rows = find_runs(runs_dir)
    if not rows:
        say(f"no runs in {runs_dir}")
        return
    out.print(_runs_table(rows, f"runs in {runs_dir}"))


def _runs_table(rows: list[dict[str, Any]], title: str) -> Table:
    """One row per run: name, status, test and val accuracy ('-' if none), stop reason, age."""
    table = Table(title=title)
    for column in ("run", "status", "test acc", "val acc", "stopped by", "age"):
        justify = "right" if "acc" in column or column == "age" else "left"
        table.add_column(column, justify=justify, no_wrap=column == "run")
    for r in rows:
        table.add_row(
            r["run"],
            r["status"],
            "-" if r["test"] is None else f"{r['test']:.4f}",
            "-" if r["val"] is None else f"{r['val']:.4f}",
            r["stopped_by"],
            r["age"],
        )
    return table
