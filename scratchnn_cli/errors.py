"""Exceptions the CLI turns into one-line messages and documented exit codes."""

from __future__ import annotations

EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_GRADCHECK = 4
EXIT_INTERRUPTED = 130


class ScratchnnError(Exception):
    """Base class: an error with a one-line message and an exit code."""

    exit_code = EXIT_INTERNAL


class UserInputError(ScratchnnError):
    """Bad input from the user: a config, a data file, a run folder (exit code 2)."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(UserInputError):
    """The experiment spec is invalid; the message names the key path."""


class DataError(UserInputError):
    """A dataset is missing, corrupt or unusable; the message says what and where."""


class RunFolderError(UserInputError):
    """A folder that is not a (finished) run."""


class RunWriteError(ScratchnnError):
    """A run folder could not be written (disk full, permission denied): exit code 1."""

    exit_code = EXIT_INTERNAL


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a command after it saved its work; the message says where the
    work is and the command that goes on with it (printed as is, exit code 130)."""


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type name): for one-line errors."""
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__
