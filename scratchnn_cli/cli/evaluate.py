"""``scratchnn evaluate``: score a finished run on one split of its rebuilt data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scratchnn_cli.cli.app import err, handle_errors, out, say


@handle_errors
def evaluate(
    run_dir: Annotated[
        Path,
        typer.Argument(help="A finished run folder, e.g. runs/20261125-101500-circles_shallow."),
    ],
    split: Annotated[str, typer.Option(help="Which split to score: test, val or train.")] = "test",
) -> None:
    """Reload a finished run, rebuild its data and score it on held-out data."""
    from scratchnn_cli.errors import UserInputError
    from scratchnn_cli.experiment import evaluate_run
    from scratchnn_cli.report.plots import confusion_table

    if split not in ("train", "val", "test"):
        raise UserInputError(f"--split must be test, val or train (got {split!r})")
    result = evaluate_run(run_dir, split)
    out.print(
        confusion_table(
            result["confusion_matrix"], result["class_names"], title=f"{split} confusion matrix"
        )
    )
    say(f"{split} accuracy: {result['accuracy']:.4f}  (n = {result['n']})")
    if not result["data_matches_training"]:
        err.print("warning: the rebuilt data differs from what the run recorded (fingerprint)")
    say(str(Path(run_dir) / "evaluation.json"))
