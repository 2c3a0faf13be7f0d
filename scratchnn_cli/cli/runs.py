"""``scratchnn runs``: list the run folders of a folder, one row each, and the folders of runs
(sweeps, reproduce) in it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from scratchnn_cli.cli.common import handle_errors, out, say
from scratchnn_cli.report.text import printable

if TYPE_CHECKING:
    pass


@handle_errors
def list_runs(
    runs_dir: Annotated[
        Path, typer.Argument(metavar="RUNS_DIR", help="The folder holding run folders.")
    ] = Path("runs"),
) -> None:
    """List the runs in RUNS_DIR: status, test accuracy, stop reason and age, newest last; then
    the folders of runs in it (a sweep's, reproduce's), which `scratchnn runs FOLDER` lists,
    and the learning-rate range tests (`scratchnn lr-find`) with the rate each suggested."""
    from scratchnn_cli.report.tables import fitted_runs_table, groups_table, range_tests_table
    from scratchnn_cli.runs.listing import list_runs as find_runs
    from scratchnn_cli.runs.listing import range_tests, run_groups

    rows, groups, tests = find_runs(runs_dir), run_groups(runs_dir), range_tests(runs_dir)
    if not rows and not groups and not tests:
        say(f"no runs in {runs_dir}")
        return
    if rows:
        out.print(fitted_runs_table(rows, f"runs in {printable(runs_dir)}", out))
    else:
        say(f"no runs directly in {runs_dir}")
    if groups:
        out.print(groups_table(groups, runs_dir))
    if tests:
        out.print(range_tests_table(tests, runs_dir))
