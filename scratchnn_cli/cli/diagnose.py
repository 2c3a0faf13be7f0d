"""``scratchnn diagnose``: why a run did not learn, in a few lines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scratchnn_cli.cli.common import err, handle_errors, say


@handle_errors
def diagnose(
    run_dir: Annotated[
        Path, typer.Argument(metavar="RUN_DIR", help="A run folder (finished or not).")
    ],
) -> None:
    """Read a run's history and diagnostics and say what went wrong, one line per finding:
    what was seen (numbers, epoch), what it usually means, and a --set to try.

    The most important finding comes first; "nothing wrong found" when no rule fires. Runs
    written before diagnostics existed get what their history allows, and say what is missing.
    """
    from scratchnn_cli.diagnose import diagnose as findings_of
    from scratchnn_cli.diagnose import load_evidence, missing_evidence

    evidence = load_evidence(run_dir)
    missing = missing_evidence(evidence)
    if missing:
        err.print(f"note: {missing}", markup=False, highlight=False, soft_wrap=True)
    for finding in findings_of(evidence):
        say(finding.line())
