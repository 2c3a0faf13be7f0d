"""``scratchnn compare``: finished (or not) runs side by side, in one table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from scratchnn_cli.cli.common import err, handle_errors, out
from scratchnn_cli.cli.output import STDOUT
from scratchnn_cli.report.text import printable

if TYPE_CHECKING:
    from rich.table import Table

    from scratchnn_cli.compare import Comparison


@handle_errors
def compare(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Run folders, or folders of run folders (a sweep: every folder one or two "
            "levels below holding run.json).",
            metavar="RUN_DIR|SWEEP_DIR",
            show_default=False,
        ),
    ] = None,
    all_keys: Annotated[
        bool, typer.Option("--all", help="Show every config key, not only those that differ.")
    ] = False,
    csv_path: Annotated[
        str | None,
        typer.Option(
            "--csv",
            metavar="PATH",
            help="Also write the table as CSV (raw values) to PATH; - for stdout.",
        ),
    ] = None,
    md_path: Annotated[
        str | None,
        typer.Option(
            "--md", metavar="PATH", help="Also write the table as Markdown to PATH; - for stdout."
        ),
    ] = None,
    plot_path: Annotated[
        Path | None,
        typer.Option(
            "--plot", metavar="PATH", help="Write the runs' learning curves, overlaid, as a PNG."
        ),
    ] = None,
    html_path: Annotated[
        str | None,
        typer.Option(
            "--html",
            metavar="PATH",
            help="Write one self-contained page (table + curves) to PATH; - for stdout.",
        ),
    ] = None,
) -> None:
    """Show runs side by side: name, the config keys that differ between them, accuracy per
    split (from metrics.json), epochs, seconds and status.

    The table goes to stdout unless some output is written there (``--csv -``, ``--md -``,
    ``--html -``); the paths of the files written are printed to stderr.
    """
    from scratchnn_cli.compare import compare as compare_runs
    from scratchnn_cli.compare import curves, to_csv, to_html, to_markdown
    from scratchnn_cli.errors import UserInputError

    if plot_path is not None and str(plot_path) == STDOUT:
        raise UserInputError("--plot needs a file path (a PNG is not written to stdout)")
    comparison = compare_runs(paths or [], all_keys)

    png: bytes | None = None
    if plot_path is not None or html_path is not None:
        from scratchnn_cli.report.plots import overlaid_curves_png

        drawn = curves(comparison)
        png = overlaid_curves_png(drawn) if drawn else None
        if plot_path is not None:
            if png is None:
                raise UserInputError("--plot: none of these runs has a history.csv")
            _write(str(plot_path), png)

    outputs = [(csv_path, to_csv), (md_path, to_markdown)]
    for target, render in outputs:
        if target is not None:
            _write(target, render(comparison))
    if html_path is not None:
        _write(html_path, to_html(comparison, png))
    if STDOUT not in (csv_path, md_path, html_path):
        print_table(comparison)


def _write(target: str, content: str | bytes) -> None:
    """``content`` to stdout (``-``) or into the user's path ``target`` (``cli.output``), whose
    name then goes to stderr."""
    from scratchnn_cli.cli.output import write_output

    write_output(target, content)
    if target != STDOUT:
        err.print(f"wrote {printable(target)}", markup=False, highlight=False, soft_wrap=True)


def print_table(comparison: Comparison) -> None:
    """Print the comparison table, never squeezed: one row per run when that fits the
    terminal, else transposed (one column per run) when that fits, else the narrower of the
    two at its full width (lines longer than the terminal rather than columns cut down)."""
    from rich.measure import Measurement

    from scratchnn_cli.report.tables import comparison_table

    def width(table: Table) -> int:
        return Measurement.get(out, out.options.update(width=10_000), table).maximum

    tables = [comparison_table(comparison), comparison_table(comparison, transposed=True)]
    widths = [width(t) for t in tables]
    fitting = [i for i, w in enumerate(widths) if w <= out.width]
    best = fitting[0] if fitting else widths.index(min(widths))
    if widths[best] <= out.width:
        out.print(tables[best])
    else:  # a console as wide as the table: Console.print(width=...) caps at the terminal's
        from rich.console import Console

        Console(width=widths[best]).print(tables[best])
