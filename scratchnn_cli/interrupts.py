"""Ctrl-C and SIGTERM: the three policies a run needs, in one place.

1. While a command works (``stop_cleanly_on_signals``): the first signal raises
   KeyboardInterrupt, so training stops at the end of its epoch and saves; with ``then_ignore``,
   later ones are ignored until the save is marked (a second Ctrl-C just after the first could
   otherwise stop the saving before run.json says interrupted).
2. While a run folder is saved after the first (``interrupt_guard``): ignored until run.json
   says interrupted, then a second one ends the process at once, after a clean-up.
3. Once the command has saved what it did (``exit_on_the_next_signal``): the next one ends the
   process at once, wherever it lands (the last line, Click's exit, Python's shutdown), instead
   of raising a KeyboardInterrupt that would print a traceback.

Signal handlers can only be set from the main thread: elsewhere (a sweep's worker threads)
these do nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator

from scratchnn_cli.errors import EXIT_INTERRUPTED

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stop_cleanly_on_signals(then_ignore: bool = False) -> None:
    """Ctrl-C and SIGTERM raise KeyboardInterrupt, even where the shell started us with SIGINT
    ignored (a background job of a non-interactive shell: Python then installs no handler);
    with ``then_ignore``, the signals after the first are ignored (see the module's 1.)."""
    if not _main_thread():
        return
    handler = _interrupt_then_ignore if then_ignore else _interrupt
    for sig in SIGNALS:
        signal.signal(sig, handler)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _interrupt_then_ignore(signum: int, frame: object) -> None:
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


@contextlib.contextmanager
def interrupt_guard(clean_up: Callable[[], None]) -> Iterator[Callable[[], None]]:
    """While saving after a first Ctrl-C: signals are ignored until the caller calls the
    yielded ``marked()`` (run.json says interrupted); from there a second one calls
    ``clean_up`` (half-written temporary files) and ends the process with exit code 130. The
    previous handlers come back after the block."""
    if not _main_thread():
        yield lambda: None
        return

    def exit_now(signum: int, frame: object) -> None:
        clean_up()
        os._exit(EXIT_INTERRUPTED)

    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    try:
        yield lambda: [signal.signal(sig, exit_now) for sig in SIGNALS]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def exit_on_the_next_signal() -> None:
    """From here the next Ctrl-C or SIGTERM ends the process at once with 130."""
    if _main_thread():
        for sig in SIGNALS:
            signal.signal(sig, _exit_interrupted)


def _exit_interrupted(signum: int, frame: object) -> None:
    os._exit(EXIT_INTERRUPTED)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
