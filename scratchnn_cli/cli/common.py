"""What every command shares: the consoles and ``say`` (stdout, stderr), ``handle_errors``
(known errors as one line and an exit code, unknown ones as a logged traceback, exit 1),
the ``--threads`` option and the exit codes' help. Commands import these from here; ``app.py``
imports the commands.

Exit codes: 0 ok, 1 internal error or a run folder that could not be written (traceback in a
log file), 2 bad input, 3 training diverged, 4 gradient check failed, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from scratchnn_cli.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, ScratchnnError
from scratchnn_cli.interrupts import exit_on_the_next_signal
from scratchnn_cli.report.text import printable

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 internal error or a failed write (disk full...); 2 bad input "
    "(config, data, run folder, option); 3 training diverged; 4 gradient check failed; "
    "130 interrupted (Ctrl-C, SIGTERM)."
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


def fail(message: str, code: int) -> typer.Exit:
    """Print ``error: <message>`` (one line, literally) on stderr; the Exit to raise."""
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
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt as exc:  # not an error: what was done is saved
            exit_on_the_next_signal()
            err.print(
                printable(str(exc) or "interrupted"), markup=False, highlight=False, soft_wrap=True
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            where = _log_traceback()
            raise fail(
                f"internal error: {type(exc).__name__}: {exc} (traceback in {where})",
                EXIT_INTERNAL,
            ) from None

    return wrapper  # type: ignore[return-value]
