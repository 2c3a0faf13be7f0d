"""The ``scratchnn`` command line: the Typer ``app`` and its command group, the ``--version``
callback, and the registration of the commands, each in its own module (train, evaluate,
reproduce, sweep, gradcheck, summary, runs, report, compare) that only parses, calls and
prints: the work happens in other modules. What the commands share is in ``common.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from scratchnn_cli import __version__
from scratchnn_cli.cli import (
    compare,
    diagnose,
    evaluate,
    gradcheck,
    lr_find,
    report,
    reproduce,
    runs,
    summary,
    sweep,
    train,
)
from scratchnn_cli.cli.common import EXIT_CODES_HELP, fail, out


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
    return fail(f"{message} (see {command} --help)", 2)


app = typer.Typer(
    name="scratchnn",
    cls=OneLineErrors,
    help="Neural networks from scratch in NumPy: train from a YAML spec, evaluate runs.\n\n"
    + EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


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
    commands: list[tuple[Callable[..., Any], str | None]] = [
        (train.train, None),
        (evaluate.evaluate, None),
        (reproduce.reproduce, None),
        (sweep.sweep, None),
        (gradcheck.gradcheck, None),
        (lr_find.lr_find, "lr-find"),
        (summary.summary, None),
        (runs.list_runs, "runs"),
        (report.report, None),
        (compare.compare, None),
        (diagnose.diagnose, None),
    ]
    for command, name in commands:
        epilog = sweep.SWEEP_EXIT_HELP if command is sweep.sweep else EXIT_CODES_HELP
        app.command(name=name, epilog=epilog, cls=PlainHelp)(command)


_register_commands()
