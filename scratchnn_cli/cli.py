"""The ``scratchnn`` command line: parse, call, print. All the work happens in other modules.

Exit codes: 0 ok, 1 unexpected internal error (traceback in a log file), 2 bad input,
3 training diverged, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import functools
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from scratchnn_cli import __version__
from scratchnn_cli.errors import (
    EXIT_DIVERGED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    ScratchnnError,
)

EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 1 unexpected internal error (traceback saved to a log), 2 bad input "
    "(config, data, run folder), 3 training diverged, 130 interrupted."
)

app = typer.Typer(
    name="scratchnn",
    help="Neural networks from scratch in NumPy: train from a YAML spec, evaluate runs.\n\n"
    + EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
out = Console()
err = Console(stderr=True)


def say(text: str) -> None:
    """Print a plain line to stdout: no markup or highlighting, never wrapped (paths stay whole)."""
    out.print(text, markup=False, highlight=False, soft_wrap=True)


F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(command: F) -> F:
    """Turn known errors into one line + exit code; unknown ones into a logged traceback (1)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ScratchnnError as exc:
            raise _fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise _fail("interrupted", EXIT_INTERRUPTED) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            with tempfile.NamedTemporaryFile(
                "w", prefix="scratchnn-error-", suffix=".log", delete=False
            ) as log:
                log.write(traceback.format_exc())
            raise _fail(
                f"internal error: {type(exc).__name__}: {exc} (traceback in {log.name})",
                EXIT_INTERNAL,
            ) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        out.print(f"scratchnn {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Neural networks from scratch in NumPy."""


@app.command(epilog=EXIT_CODES_HELP)
@handle_errors
def train(
    config: Annotated[
        Path, typer.Argument(help="The experiment spec, e.g. configs/circles_shallow.yaml.")
    ],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a key of the spec: --set train.lr=0.01 (repeatable)."),
    ] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where run folders are created.")] = Path("runs"),
) -> None:
    """Train the network a YAML spec describes and write a run folder under RUNS_DIR."""
    from scratchnn_cli.config import load_config
    from scratchnn_cli.experiment import run_experiment

    spec = load_config(config, set_ or [])
    outcome = run_experiment(spec, runs_dir, console=err, config_path=config)
    say(f"stopped: {outcome.result.stop_reason}")
    for split, m in outcome.metrics.items():
        say(f"{split:>5} accuracy: {m['accuracy']:.4f}  (n = {m['n']})")
    say(str(outcome.run_dir))
    if outcome.status == "diverged":
        raise typer.Exit(EXIT_DIVERGED)


@app.command(epilog=EXIT_CODES_HELP)
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
    from scratchnn_cli.report import confusion_table

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


@app.command(epilog=EXIT_CODES_HELP)
@handle_errors
def reproduce(
    configs_dir: Annotated[
        Path, typer.Option(help="Folder with reproduce.yaml and the configs.")
    ] = Path("configs"),
    runs_dir: Annotated[
        Path, typer.Option(help="Where the reproduce-<timestamp> folder goes.")
    ] = Path("runs"),
    jobs: Annotated[int, typer.Option(min=1, help="Experiments trained at the same time.")] = 2,
) -> None:
    """Rerun every experiment of the course assignment; print ours beside the reported numbers."""
    from scratchnn_cli.reproduce import reproduce_all

    out_dir, _ = reproduce_all(configs_dir, runs_dir, jobs=jobs, console=out)
    say(str(out_dir))
