"""Writing to a path the user names (``--csv PATH``, ``--md PATH``, ``--plot PATH``...).

Such a path is the user's, not the tool's: it is opened and written, never replaced. Atomic
replace (write a temp file, rename it over the path) is right for the files of a run folder the
tool owns (``runs.folder.atomic_write``), but over a user's path it would turn a symlink, a
FIFO or a device (``/dev/stdout``, ``/dev/full``) into a regular file and report success.
"""

from __future__ import annotations

import os
import stat
import sys

from scratchnn_cli.errors import RunWriteError, UserInputError, one_line

#: The name that means standard output, as in most command-line tools.
STDOUT = "-"


def write_output(target: str, content: str | bytes) -> None:
    """Write ``content`` (text as UTF-8) to stdout when ``target`` is ``-``, else to the path
    ``target``, opened in place: a new or regular file (a symlink followed) is truncated and
    written; a FIFO or a character device (a terminal, ``/dev/null``) is written to as it is.
    UserInputError (exit 2) for a folder or any other kind of file (a block device, a socket);
    RunWriteError (exit 1) when the writing fails (no such folder, permission denied, disk
    full)."""
    if target == STDOUT:
        if isinstance(content, str):
            sys.stdout.write(content)
        else:
            sys.stdout.flush()
            sys.stdout.buffer.write(content)
        sys.stdout.flush()
        return
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_NOCTTY, 0o666)
    except IsADirectoryError:
        raise UserInputError(f"{target}: is a folder, not a file") from None
    except OSError as exc:
        raise RunWriteError(f"{target}: could not write ({one_line(exc)})") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            os.ftruncate(fd, 0)
        elif not (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
            raise UserInputError(f"{target}: not a file, a FIFO or a terminal; nothing written")
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:
        raise RunWriteError(f"{target}: could not write ({one_line(exc)})") from None
    finally:
        os.close(fd)
