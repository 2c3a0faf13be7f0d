"""``scratchnn lr-find``: the learning-rate range test of a spec, into its own folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from scratchnn_cli.cli.common import ThreadsOption, err, handle_errors, say
from scratchnn_cli.report.text import printable

if TYPE_CHECKING:
    from scratchnn_cli.config import ExperimentConfig
    from scratchnn_cli.lr_find import LRFindResult


@handle_errors
def lr_find(
    config: Annotated[
        Path,
        typer.Argument(metavar="CONFIG", help="The experiment spec whose training is tested."),
    ],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="KEY=VALUE", help="Override a key of the spec (repeatable)."),
    ] = None,
    start: Annotated[
        float, typer.Option(metavar="LR", help="The rate of the first update.")
    ] = 1e-7,
    end: Annotated[
        float, typer.Option(metavar="LR", help="The rate of the last update (if it gets there).")
    ] = 10.0,
    updates: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Updates from --start to --end (default: about 32,000 samples' worth, "
            "100 to 4,000).",
        ),
    ] = None,
    runs_dir: Annotated[
        Path,
        typer.Option(metavar="PATH", help=r"Where the lr-find-\<name\>-\<timestamp\> folder goes."),
    ] = Path("runs"),
    threads: ThreadsOption = None,
) -> None:
    """Run the learning-rate range test of a spec and suggest a train.lr.

    From the spec's initial weights, one update per rate, the rate growing exponentially from
    --start to --end (stopping once the smoothed cost passes 4x its best); everything else
    (data, batches, update rule, engine) as `scratchnn train` would do it. Writes lr_find.png,
    lr_find.csv, lr_find.json and config.yaml into a new folder; prints the suggested rate (the
    steepest descent of the smoothed cost) and why, then the folder.
    """
    from scratchnn_cli.config import load_config
    from scratchnn_cli.lr_find import check_range, lr_range_test
    from scratchnn_cli.nn.threads import threads as layer_threads

    check_range(start, end, updates)
    spec = load_config(config, set_ or [])
    doing = f"range test of {printable(spec.name)}: rates from {start:g} to {end:g}"
    with layer_threads(threads), err.status(escape(doing)):
        result = lr_range_test(spec, start, end, updates)
    folder = _write_folder(runs_dir, spec, result)
    ran = f"{len(result.lrs)} of {result.total_updates} updates, {result.engine} engine"
    err.print(f"{ran}: {result.stop_reason}", markup=False, highlight=False, soft_wrap=True)
    if result.suggested is None:
        say(f"no suggestion: {result.why}")
    else:
        say(
            f"suggested lr: {result.suggested:.2g}, {result.why}; "
            f"the spec's train.lr is {result.configured_lr:g}"
        )
    say(str(folder))


def _write_folder(runs_dir: Path, spec: ExperimentConfig, result: LRFindResult) -> Path:
    """A new ``lr-find-<name>-<timestamp>`` folder holding the curve (PNG, CSV), the result
    (JSON) and the spec. A curve that cannot be drawn is a note, not the end of the rest."""
    from scratchnn_cli.errors import RunWriteError, one_line
    from scratchnn_cli.experiment import png_or_note
    from scratchnn_cli.report.plots import lr_find_png
    from scratchnn_cli.runs import create_run_dir, json_bytes, write_files, yaml_bytes

    files = [
        ("config.yaml", yaml_bytes(spec.to_dict())),
        ("lr_find.csv", result.curve_csv().encode()),
        ("lr_find.json", json_bytes(result.to_json())),
    ]
    title = f"{spec.name}: learning-rate range test"
    png = png_or_note(  # a broken matplotlib or font: the numbers still count
        err,
        "lr_find.png",
        lambda: lr_find_png(
            result.lrs, result.costs, result.smoothed, result.suggested, result.configured_lr, title
        ),
    )
    if png is not None:
        files.append(("lr_find.png", png))
    folder = create_run_dir(runs_dir, f"lr-find-{spec.name}", name_first=True)
    try:
        write_files(folder, files)
    except OSError as exc:
        raise RunWriteError(f"{folder}: could not write ({one_line(exc)})") from None
    return folder
