"""``scratchnn evaluate``: score a finished run on one split of its rebuilt data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from scratchnn_cli.cli.common import ThreadsOption, err, handle_errors, out, say

if TYPE_CHECKING:
    pass


@handle_errors
def evaluate(
    run_dir: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_DIR",
            help="A finished run folder, e.g. runs/20261125-101500-circles_shallow.",
        ),
    ],
    split: Annotated[
        Literal["test", "val", "train"], typer.Option(help="Which split to score.")
    ] = "test",
    threads: ThreadsOption = None,
) -> None:
    """Reload a finished run, rebuild its data and score it on one split; the scores go to
    RUN_DIR/evaluation-SPLIT.json (one file per split)."""
    from scratchnn_cli.experiment import evaluate_run, save_evaluation
    from scratchnn_cli.nn.threads import threads as layer_threads
    from scratchnn_cli.report.tables import (
        confused_pair_lines,
        confusion_table,
        per_class_table,
    )

    with layer_threads(threads):
        result = evaluate_run(run_dir, split)
    scores = result.scores
    out.print(
        confusion_table(
            scores.confusion_matrix, result.class_names, title=f"{split} confusion matrix"
        )
    )
    out.print(per_class_table(scores.confusion_matrix, result.class_names, split))
    for line in confused_pair_lines(scores.confused_pairs):
        say(line)
    say(f"{split} accuracy: {scores.accuracy:.4f}  (n = {scores.n})")
    if not result.held_out:
        err.print(
            f"note: the model was trained on the {split} split: this is not a held-out score",
            markup=False,
            highlight=False,
        )
    say(str(save_evaluation(run_dir, result)))  # after the scores: a folder we cannot write
