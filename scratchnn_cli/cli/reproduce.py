"""``scratchnn reproduce``: rerun the course assignment's experiments beside its numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scratchnn_cli.cli.common import handle_errors, out, say
from scratchnn_cli.errors import EXIT_INTERNAL


@handle_errors
def reproduce(
    configs_dir: Annotated[
        Path, typer.Option(metavar="PATH", help="Folder with reproduce.yaml and the configs.")
    ] = Path("configs"),
    runs_dir: Annotated[
        Path,
        typer.Option(
            metavar="PATH", help=r"Where the reproduce-\<timestamp\> folder goes."
        ),  # \<: markdown
    ] = Path("runs"),
    jobs: Annotated[
        int, typer.Option(min=1, metavar="N", help="Experiments trained at the same time.")
    ] = 2,
) -> None:
    """Rerun every experiment of the course assignment; print ours beside the reported numbers."""
    from scratchnn_cli.reproduce import reproduce_all

    out_dir, rows = reproduce_all(configs_dir, runs_dir, jobs=jobs, console=out)
    say(str(out_dir))
    if any(r.status.startswith("failed") for r in rows):
        raise typer.Exit(EXIT_INTERNAL)
