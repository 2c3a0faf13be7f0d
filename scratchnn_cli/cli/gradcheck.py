"""``scratchnn gradcheck``: backprop against finite differences for a spec's network."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from scratchnn_cli.cli.common import err, handle_errors, out, say
from scratchnn_cli.errors import EXIT_GRADCHECK
from scratchnn_cli.report.text import printable

if TYPE_CHECKING:
    from scratchnn_cli.nn.gradcheck import GradCheckRow


@handle_errors
def gradcheck(
    config: Annotated[
        Path, typer.Argument(metavar="CONFIG", help="The experiment spec whose model is checked.")
    ],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="KEY=VALUE", help="Override a key of the spec (repeatable)."),
    ] = None,
    samples: Annotated[
        int, typer.Option(min=1, metavar="N", help="Training samples the cost uses.")
    ] = 8,
    max_entries: Annotated[
        int,
        typer.Option(
            min=1, metavar="N", help="Entries checked per parameter array (random sample)."
        ),
    ] = 200,
    tolerance: Annotated[
        float, typer.Option(metavar="NUMBER", help="Largest relative error that passes.")
    ] = 1e-6,
) -> None:
    """Check backprop against finite differences for the model a spec describes (float64).

    Builds the configured network on a few samples of its data (dropout off, L1/L2 included)
    and prints the relative error per layer and parameter; exits with 4 above the tolerance.
    """
    from scratchnn_cli.config import load_config
    from scratchnn_cli.errors import UserInputError
    from scratchnn_cli.experiment import gradcheck_experiment
    from scratchnn_cli.report.tables import gradcheck_table

    if not tolerance >= 0:  # NaN too: every check would fail
        raise UserInputError(f"--tolerance must be a number >= 0 (got {tolerance:g})")
    spec = load_config(config, set_ or [])
    doing = (  # a big model takes a while: a terminal shows what is being done meanwhile
        f"checking gradients of {printable(spec.name)}: up to {max_entries} entries per "
        f"parameter array, two passes over {samples} samples each"
    )
    with err.status(escape(doing)):
        rows, n_used = gradcheck_experiment(spec, samples, max_entries)
    title = f"gradient check: {spec.name} ({n_used} samples, float64)"
    out.print(gradcheck_table(rows, tolerance, title))
    worst = _worst_error(rows)
    if not worst <= tolerance:  # NaN (a broken backprop) fails too
        say(f"FAILED: the largest relative error {worst:.2e} is above {tolerance:g}")
        raise typer.Exit(EXIT_GRADCHECK)
    say(f"passed: every relative error is at most {tolerance:g} (largest {worst:.2e})")


def _worst_error(rows: list[GradCheckRow]) -> float:
    """The largest relative error of ``rows``: NaN if any is NaN, 0 if there are none."""
    errors = [r.relative_error for r in rows]
    return math.nan if any(math.isnan(e) for e in errors) else max(errors, default=0.0)
