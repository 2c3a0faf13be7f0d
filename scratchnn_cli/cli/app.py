"""The ``scratchnn`` command line: the Typer ``app``, the ``--version`` callback, the error
handling every command shares (``handle_errors``) and the output helpers (``say``, ``out``,
``err``). Each command lives in its own module (train, evaluate, reproduce, gradcheck,
summary, runs, report) and only parses, calls and prints: the work happens in other modules.

Exit codes: 0 ok, 1 internal error or a run folder that could not be written (traceback in a
log file), 2 bad input, 3 training diverged, 4 gradient check failed, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from scratchnn_cli import __version__
from scratchnn_cli.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, ScratchnnError
from scratchnn_cli.report.text import printable

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 internal error or a failed write (disk full...); 2 bad input "
    "(config, data, run folder, option); 3 training diverged; 4 gradient check failed; "
    "130 interrupted (Ctrl-C, SIGTERM)."
)


class OneLineErrors(TyperGroup):
    """Typer's command group, with command-line errors (a bad option value, a missing or extra
    argument, an unknown option or command) as one line and exit code 2, like every other bad
    input, instead of Click's usage box. ``typer.TyperException`` is the public base of Click's
    exceptions in Typer (``typer.Exit`` and ``typer.Abort`` are not among them)."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except typer.TyperException as exc:
            raise _usage_error(exc) from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except typer.TyperException as exc:
            raise _usage_error(exc) from None


class PlainHelp(TyperCommand):
    """A command whose ``--help`` shows no Python type: nothing beside a flag (Typer writes
    ``<bool>``, as if it took a value) or an argument (``<list[Path]>``: its name, in capitals
    as its help text writes it, says what it is). Every option declares its metavar (``PATH``,
    ``N``, ``KEY=VALUE``) or its choices."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""  # --help, --refit / --no-refit: they take no value
            if param.param_type_name == "argument" and hasattr(param, "display_type_rich"):
                param.display_type_rich = _no_type  # its metavar says it: RUN_DIR, CONFIG
        return params


def _no_type(ctx: Any) -> None:
    return None


def _usage_error(exc: typer.TyperException) -> typer.Exit:
    context = getattr(exc, "ctx", None)
    command = context.command_path if context is not None else "scratchnn"
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    return _fail(f"{message} (see {command} --help)", 2)


app = typer.Typer(
    name="scratchnn",
    cls=OneLineErrors,
    help="Neural networks from scratch in NumPy: train from a YAML spec, evaluate runs.\n\n"
    + EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
out = Console()
err = Console(stderr=True)


#: ``--threads`` of the commands that run a network (train, evaluate, report): nn/threads.py
ThreadsOption = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        metavar="N",
        help="Threads for the layers' work (default: one per CPU core; BLAS then keeps to one). "
        "A speed setting only: any count gives the same numbers.",
    ),
]


def say(text: str) -> None:
    """Print a plain line to stdout: no markup or highlighting, never wrapped (paths stay whole),
    control characters shown as escapes (a line may carry a class or column name)."""
    out.print(printable(text), markup=False, highlight=False, soft_wrap=True)


F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int) -> typer.Exit:
    message = printable(message)  # always one line, and data in it never drives the terminal
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


#: How many internal-error logs are kept: the newest; older ones go as a new one is written.
KEPT_ERROR_LOGS = 20


def error_log_dir() -> Path:
    """Where internal-error tracebacks go: ``$XDG_CACHE_HOME/scratchnn/errors`` (beside the
    downloaded data), or the temporary folder when that cannot be made."""
    from scratchnn_cli.data.fashion_mnist import cache_dir

    folder = cache_dir() / "errors"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return Path(tempfile.gettempdir())
    return folder


def _log_traceback() -> str:
    """Write the current exception's traceback to a new log in ``error_log_dir()``, keeping
    the newest ``KEPT_ERROR_LOGS`` of them there; return its path."""
    folder = error_log_dir()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with tempfile.NamedTemporaryFile(
        "w", dir=folder, prefix=f"scratchnn-error-{stamp}-", suffix=".log", delete=False
    ) as log:
        log.write(traceback.format_exc())
    with contextlib.suppress(OSError):  # another process pruning too: its files, its errors
        logs = sorted(folder.glob("scratchnn-error-*.log"), key=lambda p: p.stat().st_mtime)
        for old in logs[:-KEPT_ERROR_LOGS]:
            old.unlink(missing_ok=True)
    return log.name


def handle_errors(command: F) -> F:
    """Turn known errors into one line + exit code; unknown ones into a logged traceback (1)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ScratchnnError as exc:
            raise _fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt as exc:  # not an error: what was done is saved
            _exit_on_the_next_signal()
            err.print(
                printable(str(exc) or "interrupted"), markup=False, highlight=False, soft_wrap=True
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            where = _log_traceback()
            raise _fail(
                f"internal error: {type(exc).__name__}: {exc} (traceback in {where})",
                EXIT_INTERNAL,
            ) from None

    return wrapper  # type: ignore[return-value]


def _exit_on_the_next_signal() -> None:
    """Interrupted, with everything saved: from here a second Ctrl-C (or SIGTERM) ends the
    process at once with 130, wherever it lands (printing the last line, Click's exit, Python's
    shutdown), instead of raising a KeyboardInterrupt that would print a traceback."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _exit_interrupted)


def _exit_interrupted(signum: int, frame: object) -> None:
    os._exit(EXIT_INTERRUPTED)


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


def _register_commands() -> None:
    """Add every command to ``app``, in the order ``--help`` lists them."""
    from scratchnn_cli.cli import (
        evaluate,
        gradcheck,
        report,
        reproduce,
        runs,
        summary,
        sweep,
        train,
    )
    from scratchnn_cli.cli.compare import compare

    commands: list[tuple[Callable[..., Any], str | None]] = [
        (train.train, None),
        (evaluate.evaluate, None),
        (reproduce.reproduce, None),
        (sweep.sweep, None),
        (gradcheck.gradcheck, None),
        (summary.summary, None),
        (runs.list_runs, "runs"),
        (report.report, None),
        (compare, None),
    ]
    for command, name in commands:
        epilog = sweep.SWEEP_EXIT_HELP if command is sweep.sweep else EXIT_CODES_HELP
        app.command(name=name, epilog=epilog, cls=PlainHelp)(command)


_register_commands()
