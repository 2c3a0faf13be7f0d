"""``scratchnn report``: write a finished run's self-contained HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scratchnn_cli.cli.common import ThreadsOption, handle_errors, say


@handle_errors
def report(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A finished run folder.")],
    threads: ThreadsOption = None,
) -> None:
    """Write RUN_DIR/report.html: one self-contained page with the config, the curves, the
    confusion matrix, per-class accuracy, and decision boundary or misclassified images."""
    from scratchnn_cli.experiment import load_run_model
    from scratchnn_cli.nn.threads import threads as layer_threads
    from scratchnn_cli.report.html import write_html_report

    with layer_threads(threads):  # the predictions behind the misclassified images
        path = write_html_report(load_run_model(run_dir))
    say(str(path))
