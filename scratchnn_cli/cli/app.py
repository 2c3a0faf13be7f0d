"""The ``scratchnn`` command line: parse, call, print. All the work happens in other modules.

Exit codes: 0 ok, 1 internal error or a run folder that could not be written (traceback in a
log file), 2 bad input, 3 training diverged, 4 gradient check failed, 130 interrupted.
"""

from __future__ import annotations

import functools
import signal
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
    EXIT_GRADCHECK,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    ScratchnnError,
)

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 internal error or a failed write (disk full...); 2 bad input "
    "(config, data, run folder, option); 3 training diverged; 4 gradient check failed; "
    "130 interrupted (Ctrl-C, SIGTERM)."
)

app = typer.Typer(
    name="scratchnn",
    help="Neural networks from scratch in NumPy: train from a YAML spec, evaluate runs.\n\n"
    + EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
out = Console()
err = Console(stderr=True)


def say(text: str) -> None:
    """Print a plain line to stdout: no markup or highlighting, never wrapped (paths stay whole)."""
    out.print(text, markup=False, highlight=False, soft_wrap=True)


F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int) -> typer.Exit:
    message = message.replace("\r", "\\r").replace("\n", "\\n")  # always one line
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


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@app.command(epilog=EXIT_CODES_HELP)
@handle_errors
def train(
    config: Annotated[
        Path | None,
        typer.Argument(help="The experiment spec, e.g. configs/circles_shallow.yaml."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a key of the spec: --set train.lr=0.01 (repeatable)."),
    ] = None,
    runs_dir: Annotated[
        Path, typer.Option(help="Where run folders are created (not used with --resume).")
    ] = Path("runs"),
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue this interrupted, diverged or failed run (or one whose process was "
            "killed) from its last checkpoint, in place, instead of CONFIG; --set may change "
            "train.* keys (not the optimizer) from there on."
        ),
    ] = None,
) -> None:
    """Train the network a YAML spec describes and write a run folder under RUNS_DIR.

    Ctrl-C (or SIGTERM) stops cleanly: the folder is marked interrupted with its history, the
    latest weights and a checkpoint, ready for --resume.
    """
    from scratchnn_cli.config import load_config
    from scratchnn_cli.errors import UserInputError
    from scratchnn_cli.experiment import resume_experiment, run_experiment

    if (config is None) == (resume is None):
        raise UserInputError("give either CONFIG or --resume RUN_DIR (not both)")
    # Ctrl-C and SIGTERM stop training cleanly, even where the shell started us with SIGINT
    # ignored (a background job of a non-interactive shell: Python then installs no handler).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    if resume is not None:
        outcome = resume_experiment(resume, set_ or [], console=err)
    else:
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

    out_dir, rows = reproduce_all(configs_dir, runs_dir, jobs=jobs, console=out)
    say(str(out_dir))
    if any(r.status.startswith("failed") for r in rows):
        raise typer.Exit(EXIT_INTERNAL)


@app.command(epilog=EXIT_CODES_HELP)
@handle_errors
def gradcheck(
    config: Annotated[Path, typer.Argument(help="The experiment spec whose model is checked.")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a key of the spec (repeatable).")
    ] = None,
    samples: Annotated[int, typer.Option(min=1, help="Training samples the cost uses.")] = 8,
    max_entries: Annotated[
        int, typer.Option(min=1, help="Entries checked per parameter array (random sample).")
    ] = 200,
    tolerance: Annotated[float, typer.Option(help="Largest relative error that passes.")] = 1e-6,
) -> None:
    """Check backprop against finite differences for the model a spec describes (float64).

    Builds the configured network on a few samples of its data (dropout off, L1/L2 included)
    and prints the relative error per layer and parameter; exits with 4 above the tolerance.
    """
    from rich.table import Table

    from scratchnn_cli.config import load_config
    from scratchnn_cli.experiment import gradcheck_experiment

    spec = load_config(config, set_ or [])
    rows, n_used = gradcheck_experiment(spec, samples, max_entries)
    table = Table(title=f"gradient check: {spec.name} ({n_used} samples, float64)")
    for column in ("layer", "param", "shape", "checked", "max |diff|", "relative error", ""):
        table.add_column(column, justify="right" if column not in ("param", "") else "left")
    worst = 0.0
    for r in rows:
        ok = r.relative_error <= tolerance
        worst = max(worst, r.relative_error)
        table.add_row(
            str(r.layer),
            r.param,
            "x".join(map(str, r.shape)),
            str(r.checked),
            f"{r.max_abs_diff:.2e}",
            f"{r.relative_error:.2e}",
            "[green]ok[/]" if ok else "[bold red]FAIL[/]",
        )
    out.print(table)
    if worst > tolerance:
        say(f"FAILED: the largest relative error {worst:.2e} is above {tolerance:g}")
        raise typer.Exit(EXIT_GRADCHECK)
    say(f"passed: every relative error is at most {tolerance:g} (largest {worst:.2e})")


@app.command(name="runs", epilog=EXIT_CODES_HELP)
@handle_errors
def list_runs(
    runs_dir: Annotated[Path, typer.Argument(help="The folder holding run folders.")] = Path(
        "runs"
    ),
) -> None:
    """List the runs in RUNS_DIR: status, test accuracy, stop reason and age, newest last."""
    from rich.table import Table

    from scratchnn_cli.runs import list_runs as find_runs

    rows = find_runs(runs_dir)
    if not rows:
        say(f"no runs in {runs_dir}")
        return
    table = Table(title=f"runs in {runs_dir}")
    for column in ("run", "status", "test acc", "val acc", "stopped by", "age"):
        justify = "right" if "acc" in column or column == "age" else "left"
        table.add_column(column, justify=justify, no_wrap=column == "run")
    for r in rows:
        table.add_row(
            r["run"],
            r["status"],
            "-" if r["test"] is None else f"{r['test']:.4f}",
            "-" if r["val"] is None else f"{r['val']:.4f}",
            r["stopped_by"],
            r["age"],
        )
    out.print(table)


@app.command(epilog=EXIT_CODES_HELP)
@handle_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")],
) -> None:
    """Write RUN_DIR/report.html: one self-contained page with the config, the curves, the
    confusion matrix, per-class accuracy, and decision boundary or misclassified images."""
    from scratchnn_cli.report.html import write_html_report

    say(str(write_html_report(run_dir)))
