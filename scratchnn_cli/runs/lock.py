"""Which run is being trained: an exclusive flock(2) on ``run_dir/.lock``.

The process that trains a run (``train``, ``train --resume``) takes the lock before it writes
run.json and holds it until it is done with the folder; then it deletes ``.lock`` and lets go.
The kernel drops a flock when its process ends in any way, kill -9 included, so a run whose
run.json says "running" while no process holds its lock was killed and can be resumed. A PID
in run.json cannot tell that: the PID of a dead process may belong to another one by now.

Deleting the file before letting go keeps finished folders as they were, and is race-free:
a process that opened the old file and then got the lock sees that the file it locked is no
longer ``run_dir/.lock`` and tries again with the new one. A ``.lock`` that a killed process
left behind (kill -9, or the immediate exit of a second Ctrl-C) is harmless: it is empty, and
the next process to train the run takes it and deletes it when done.

flock works between processes of one machine (and over NFS where the server supports locks).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_NAME = ".lock"


class RunLock:
    """The lock of one run folder, taken with ``acquire`` and given back with ``release``."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock without waiting: True once held, False (nothing held, nothing changed)
        when another process holds it. Creates ``.lock`` if needed: OSError if it cannot."""
        while self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, self.path):
                self._fd = fd
            else:  # its holder deleted it while we opened it: lock the file there now
                os.close(fd)
        return True

    def release(self) -> None:
        """Delete ``.lock`` (if it is still the file this object locked) and let go; does
        nothing when the lock is not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _same_file(fd, self.path):
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
        finally:
            os.close(fd)


def is_locked(run_dir: Path) -> bool:
    """Whether some process holds the lock of ``run_dir`` now. Only reads: a missing ``.lock``
    is not created (it means no lock). The check takes a shared lock for a moment, so a
    ``train --resume`` of the run at that very moment may be refused as still training."""
    try:
        fd = os.open(Path(run_dir) / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # also lets go of the shared lock
    return False


def _same_file(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is the file at ``path`` now."""
    try:
        there = os.stat(path)
    except OSError:
        return False
    here = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
