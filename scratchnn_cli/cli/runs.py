"""``scratchnn runs``: list the run folders of a folder, one row each, and the folders of runs
(sweeps, reproduce) in it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from scratchnn_cli.cli.common import handle_errors, out, say
from scratchnn_cli.report.text import cell, printable

if TYPE_CHECKING:
    from rich.console import Console

    from scratchnn_cli.runs.listing import RunGroup

#: The columns given up, one at a time, while the table is wider than the terminal: the least
#: useful first (the run's name, status and test accuracy always stay).
DROP_ORDER = ("val acc", "age", "stopped by")
#: The narrowest a cut run name gets (with its ``…``): enough to tell runs apart by date.
MIN_NAME = 12
COLUMNS = ("run", "status", "test acc", "val acc", "stopped by", "age")


@handle_errors
def list_runs(
    runs_dir: Annotated[
        Path, typer.Argument(metavar="RUNS_DIR", help="The folder holding run folders.")
    ] = Path("runs"),
) -> None:
    """List the runs in RUNS_DIR: status, test accuracy, stop reason and age, newest last; then
    the folders of runs in it (a sweep's, reproduce's), which `scratchnn runs FOLDER` lists."""
    from scratchnn_cli.runs.listing import list_runs as find_runs
    from scratchnn_cli.runs.listing import run_groups

    rows, groups = find_runs(runs_dir), run_groups(runs_dir)
    if not rows and not groups:
        say(f"no runs in {runs_dir}")
        return
    if rows:
        out.print(fitted_runs_table(rows, f"runs in {printable(runs_dir)}", out))
    else:
        say(f"no runs directly in {runs_dir}")
    if groups:
        out.print(groups_table(groups, runs_dir))


def fitted_runs_table(rows: list[dict[str, Any]], title: str, console: Console) -> Table:
    """``runs_table`` as wide as it can be within ``console.width``: first with the stop
    reasons shortened, then without an accuracy column no run has (a sweep's runs have no
    test split: their val acc then stays), then without the columns of ``DROP_ORDER`` one
    after the other, and at last with the run names cut (``…``) to what is left of the
    width."""
    from rich.cells import cell_len
    from rich.measure import Measurement

    def width(table: Table) -> int:
        return Measurement.get(console, console.options.update(width=10_000), table).maximum

    unused = [c for c, key in (("test acc", "test"), ("val acc", "val")) if _none_has(rows, key)]
    kept = {"val acc"} if unused == ["test acc"] else set()  # the one accuracy there is
    order = [*unused, *(c for c in DROP_ORDER if c not in unused and c not in kept)]
    variants = [(False, [])] + [(True, order[:k]) for k in range(len(order) + 1)]
    for short, dropped in variants:
        table = runs_table(rows, title, short, dropped)
        if width(table) <= console.width:
            return table
    names = max([cell_len("run")] + [cell_len(printable(r["run"])) for r in rows])
    table.columns[0].max_width = max(MIN_NAME, console.width - (width(table) - names))
    return table


def _none_has(rows: list[dict[str, Any]], key: str) -> bool:
    return all(r[key] is None for r in rows)


def runs_table(
    rows: list[dict[str, Any]], title: str, short: bool = False, dropped: Sequence[str] = ()
) -> Table:
    """One row per run: name, status, test and val accuracy ('-' if none), stop reason, age;
    without the columns in ``dropped``, and with ``SHORT_STOP``'s names when ``short``. Only the
    run column may shrink (its names then end in ``…``); no cell ever wraps."""
    from scratchnn_cli.runs.listing import SHORT_STOP

    table = Table(title=cell(title))
    columns = [c for c in COLUMNS if c not in dropped]
    for column in columns:
        justify = "right" if "acc" in column or column == "age" else "left"
        least = None if column == "run" else len(column)  # the others keep their header's width
        table.add_column(
            column, justify=justify, no_wrap=True, overflow="ellipsis", min_width=least
        )
    for r in rows:
        stop = SHORT_STOP.get(r["stopped_by"], r["stopped_by"]) if short else r["stopped_by"]
        cells = {
            "run": cell(r["run"]),
            "status": r["status"],
            "test acc": "-" if r["test"] is None else f"{r['test']:.4f}",
            "val acc": "-" if r["val"] is None else f"{r['val']:.4f}",
            "stopped by": stop,
            "age": r["age"],
        }
        table.add_row(*(cells[c] for c in columns))
    return table


def groups_table(groups: list[RunGroup], runs_dir: Path) -> Table:
    """One row per folder of runs in ``runs_dir``: its name, how many runs it holds and how
    many have each status; the title says how to list one's runs."""
    example = printable(Path(runs_dir) / "FOLDER")
    title = f"folders of runs in {printable(runs_dir)}: list one with scratchnn runs {example}"
    table = Table(title=cell(title))
    table.add_column("folder", no_wrap=True, overflow="ellipsis")
    table.add_column("runs", justify="right", no_wrap=True)
    table.add_column("statuses", min_width=len("statuses"))
    for group in groups:
        statuses = ", ".join(f"{n} {status}" for status, n in sorted(group.statuses.items()))
        table.add_row(cell(f"{group.path.name}/"), f"{group.runs:,}", statuses)
    return table
