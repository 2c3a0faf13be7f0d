"""``scratchnn evaluate``: score a finished run on one split of its rebuilt data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from scratchnn_cli.cli.common import ThreadsOption, err, handle_errors, out, say

if TYPE_CHECKING:
    from rich.table import Table


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
    from scratchnn_cli.report.plots import confusion_table

    with layer_threads(threads):
        result = evaluate_run(run_dir, split)
    out.print(
        confusion_table(
            result["confusion_matrix"], result["class_names"], title=f"{split} confusion matrix"
        )
    )
    out.print(per_class_table(result["confusion_matrix"], result["class_names"], split))
    for line in confused_pair_lines(result["confused_pairs"]):
        say(line)
    say(f"{split} accuracy: {result['accuracy']:.4f}  (n = {result['n']})")
    if not result["held_out"]:
        err.print(
            f"note: the model was trained on the {split} split: this is not a held-out score",
            markup=False,
            highlight=False,
        )
    say(str(save_evaluation(run_dir, result)))  # after the scores: a folder we cannot write


def per_class_table(matrix: Any, class_names: Sequence[str], split: str) -> Table:
    """A Rich table: per class, its accuracy (recall: correct / samples of the class) and the
    counts; ``-`` and ``0 / 0`` for a class without samples."""
    import numpy as np
    from rich.table import Table

    from scratchnn_cli.metrics import as_confusion_matrix, per_class_accuracy
    from scratchnn_cli.report.text import cell

    mat = as_confusion_matrix(matrix)
    table = Table(title=f"{split} per-class accuracy")
    table.add_column("class", style="bold")
    table.add_column("accuracy", justify="right")
    table.add_column("correct / n", justify="right")
    for c, (name, accuracy) in enumerate(zip(class_names, per_class_accuracy(mat), strict=True)):
        shown = "-" if accuracy is None else f"{accuracy:.4f}"
        counts = f"{int(mat[c, c]):,} / {int(np.sum(mat[c])):,}"
        table.add_row(cell(name), shown, counts)  # a name is never markup nor a control code
    return table


def confused_pair_lines(pairs: Sequence[dict[str, Any]]) -> list[str]:
    """``most confused pairs (true -> predicted):`` and a line per pair, e.g.
    ``  Shirt -> T-shirt/top: 112 (11.2% of Shirt)``; or one line saying there are none."""
    if not pairs:
        return ["most confused pairs: none (no errors)"]
    lines = ["most confused pairs (true -> predicted):"]
    for p in pairs:
        share = 100 * p["share_of_true"]
        lines.append(
            f"  {p['true']} -> {p['predicted']}: {p['count']:,} ({share:.1f}% of {p['true']})"
        )
    return lines
