"""Run folders: create one per training run, write every file atomically, load them back.

A run folder ``runs/<YYYYmmdd-HHMMSS>-<name>`` holds config.yaml, run.json, history.csv,
metrics.json, learning_curve.png, confusion_matrix.png, model.npz and checkpoint.npz (and,
while a process trains it, ``.lock``: see ``runs.lock``). Each file is written to a temporary
name in the same folder, fsynced, and renamed into place, so a crash (power cut included)
leaves either the old or the new version of a file, never half of one. Files written together
(``write_files``) are fsynced at the same time and renamed in order. run.json is read and
written through ``RunRecord``.
"""

from __future__ import annotations

import io
import json
import os
import queue
import secrets
import threading
import zipfile
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import yaml

from scratchnn_cli.errors import ConfigError, RunFolderError, RunWriteError, one_line
from scratchnn_cli.runs.record import FINISHED, RunRecord, parse_run_record
from scratchnn_cli.yaml_limits import YAMLLimitError, bounded_safe_load, read_spec_text


def new_temp(directory: Path, name: str, made: list[Path]) -> IO[bytes]:
    """A new temp file ``.<name>.<random>.tmp`` in ``directory``, open for writing. Its path goes
    into ``made`` before the file exists, so a Ctrl-C landing anywhere (even between creating
    the file and returning it) leaves no temp file that ``made`` does not name for removal."""
    while True:
        tmp = Path(directory) / f".{name}.{secrets.token_hex(4)}.tmp"
        made.append(tmp)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # less the umask
        except FileExistsError:
            made.pop()  # another writer's: not ours to remove
            continue
        return os.fdopen(fd, "wb")


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(f)`` on a temp file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    made: list[Path] = []
    try:
        with new_temp(path.parent, path.name, made) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(made[-1], path)
    except BaseException:
        for tmp in made:
            tmp.unlink(missing_ok=True)
        raise


def write_files(directory: Path, files: Sequence[tuple[str, bytes]]) -> None:
    """Atomically write several files into ``directory``: each (name, content) to a temp file
    beside it, then all of them fsynced at once, then each renamed into place, in the order
    given. Per file this is ``atomic_write``'s guarantee: its content is on disk before its
    new name is; and the renames keep their order, so the last file (run.json) appears only
    after the others. On an error (or Ctrl-C) before a file's rename, it and every later file
    keep their old version (or stay absent), and no temp file is left."""
    directory = Path(directory)
    made: list[Path] = []  # every temp file created, in order (see new_temp)
    renamed = 0  # how many of them are in place
    temps: list[tuple[IO[bytes], Path, Path]] = []
    try:
        for name, data in files:
            f = new_temp(directory, name, made)
            temps.append((f, made[-1], directory / name))
            f.write(data)
        for f, _, _ in temps:
            f.flush()
        fsync_all([f.fileno() for f, _, _ in temps])
        while temps:
            f, tmp, path = temps[0]
            f.close()
            os.replace(tmp, path)
            renamed += 1
            temps.pop(0)
    finally:
        for f, _, _ in temps:  # not renamed: an error, or Ctrl-C
            f.close()
        for tmp in made[renamed:]:
            tmp.unlink(missing_ok=True)


def fsync_all(fds: Sequence[int]) -> None:
    """``os.fsync`` each open file, all at the same time (on ``_FsyncThreads``): the filesystem
    commits fsyncs that wait together in one journal commit, so n files take about the time of
    one. Returns (or raises the first error) once every fsync is done; a Ctrl-C meanwhile waits
    for them too (milliseconds), so the caller never closes a file that is being synced."""
    jobs = [_Fsync(fd) for fd in fds]
    for job in jobs:
        _FsyncThreads.jobs().put(job)
    interrupted: BaseException | None = None
    for job in jobs:
        while not job.done.is_set():
            try:
                job.done.wait()
            except KeyboardInterrupt as exc:
                interrupted = exc
    if interrupted is not None:
        raise interrupted
    for job in jobs:
        if job.error is not None:
            raise job.error


class _Fsync:
    """One file to fsync: a worker sets ``done`` after, with ``error`` if fsync failed."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.error: Exception | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            os.fsync(self.fd)
        except Exception as exc:  # the caller raises it; the thread goes on
            self.error = exc
        finally:
            self.done.set()


class _FsyncThreads:
    """The threads ``fsync_all`` hands its files to, started on first use and kept: a new
    thread per fsync made a batch ~5x slower on a loaded 2-core VM (a new thread waits for its
    first time slice). Daemon threads, idle between batches, so the interpreter never waits for
    them at exit; a forked child, which has none of its parent's threads, starts its own."""

    WORKERS = 8
    _queue: queue.SimpleQueue[_Fsync] | None = None

    @classmethod
    def jobs(cls) -> queue.SimpleQueue[_Fsync]:
        """Where to put a file to fsync (the threads are started on the first call)."""
        if cls._queue is None:
            cls._queue = queue.SimpleQueue()
            for _ in range(cls.WORKERS):
                threading.Thread(
                    target=cls._work, args=(cls._queue,), name="scratchnn-fsync", daemon=True
                ).start()
        return cls._queue

    @staticmethod
    def _work(jobs: queue.SimpleQueue[_Fsync]) -> None:
        while True:
            jobs.get().run()

    @classmethod
    def forget(cls) -> None:
        """In a forked child: the parent's threads are not there, start new ones when needed."""
        cls._queue = None


os.register_at_fork(after_in_child=_FsyncThreads.forget)


def write_text(path: Path, text: str) -> None:
    """Atomically write UTF-8 text."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def json_bytes(data: Any) -> bytes:
    """Pretty JSON, as every JSON file of a run folder is written."""
    return (json.dumps(data, indent=2, sort_keys=False) + "\n").encode("utf-8")


def write_json(path: Path, data: Any) -> None:
    """Atomically write pretty JSON."""
    atomic_write(path, lambda f: f.write(json_bytes(data)))


#: libyaml's emitter when PyYAML was built with it (~10x faster than the pure-Python one, the
#: same YAML); the pure-Python SafeDumper otherwise
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def yaml_bytes(data: Any) -> bytes:
    """YAML, keys in the order given."""
    return yaml.dump(data, Dumper=_DUMPER, sort_keys=False).encode("utf-8")


def write_yaml(path: Path, data: Any) -> None:
    """Atomically write YAML, keys in the order given."""
    atomic_write(path, lambda f: f.write(yaml_bytes(data)))


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Arrays as an uncompressed .npz."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomically write arrays to an uncompressed .npz."""
    atomic_write(path, lambda f: f.write(npz_bytes(arrays)))


def create_run_dir(
    runs_dir: Path, name: str, now: datetime | None = None, name_first: bool = False
) -> Path:
    """Make ``runs_dir/<YYYYmmdd-HHMMSS>-<name>`` (or ``<name>-<stamp>`` with ``name_first``),
    adding -2, -3, ... if that folder exists.

    ``runs_dir`` (and any missing parent) is created. RunFolderError (bad input, exit 2) when
    ``runs_dir`` or one of its parents is a file; RunWriteError (exit 1) when the folder cannot
    be created (permission denied, disk full)."""
    runs_dir = Path(runs_dir)
    _make_runs_dir(runs_dir)
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = f"{name}-{stamp}" if name_first else f"{stamp}-{name}"
    for k in range(1, 10_000):
        candidate = runs_dir / (base if k == 1 else f"{base}-{k}")
        try:
            candidate.mkdir()  # atomic: fails if another process took the name first
        except FileExistsError:
            continue
        except OSError as exc:
            raise RunWriteError(f"{runs_dir}: could not create a run folder: {exc}") from None
        return candidate
    raise RunFolderError(f"could not create a unique run folder for {base} in {runs_dir}")


def _make_runs_dir(runs_dir: Path) -> None:
    """``runs_dir.mkdir(parents=True)``, with a one-line error when a file is in the way."""
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        # the nearest path that is there (a dangling symlink is there, though exists() says no)
        blocker = next((p for p in (runs_dir, *runs_dir.parents) if os.path.lexists(p)), runs_dir)
        where = "" if blocker == runs_dir else f" (it would hold the runs folder {runs_dir})"
        if blocker.is_symlink() and not blocker.exists():
            target = os.readlink(blocker)
            raise RunFolderError(
                f"{blocker}: is a symbolic link to {target}, which does not exist{where}"
            ) from None
        raise RunFolderError(f"{blocker}: is a file, not a folder{where}") from None
    except OSError as exc:
        raise RunWriteError(f"{runs_dir}: could not create the runs folder: {exc}") from None


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON file written by this module (whatever JSON value it holds)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_run_record(run_dir: Path) -> tuple[RunRecord, dict[str, Any]]:
    """run.json of any run folder, whatever its status: as a RunRecord and as read (a dict,
    unknown keys included). RunFolderError, one line, when the folder is not a run folder or
    its run.json is unreadable or does not fit ``RunRecord``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: no such run folder")
    info_path = run_dir / "run.json"
    if not info_path.is_file():
        raise RunFolderError(f"{run_dir}: not a run folder (no run.json)")
    try:
        info = read_json(info_path)
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{info_path}: unreadable ({one_line(exc)})") from None
    return parse_run_record(info, str(info_path)), info


def load_run_info(run_dir: Path) -> tuple[dict[str, Any], RunRecord]:
    """(raw config, run.json) of any run folder, whatever its status (``load_run_record``)."""
    record, _ = load_run_record(run_dir)
    return read_config_yaml(Path(run_dir) / "config.yaml"), record


def read_config_yaml(path: Path) -> dict[str, Any]:
    """A run's config.yaml as a mapping; RunFolderError (one line) when unreadable. It is read
    as a spec is (``read_spec_text``: a regular file of at most ``MAX_CONFIG_BYTES``; YAML
    within the limits of yaml_limits.py), since a run folder may come from anyone: a
    tampered file (an alias bomb, thousands of levels deep, gigabytes) is refused, not built."""
    try:
        text = read_spec_text(Path(path))
    except ConfigError as exc:  # names the file and what is wrong with it
        raise RunFolderError(str(exc)) from None
    try:
        config = bounded_safe_load(text)
    except YAMLLimitError as exc:
        raise RunFolderError(f"{path}: unreadable (the YAML document {exc.problem})") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise RunFolderError(f"{path}: unreadable ({one_line(exc)})") from None
    if not isinstance(config, dict):
        raise RunFolderError(f"{path}: not a mapping")
    return config


def run_info_bytes(record: RunRecord) -> bytes:
    """run.json's content for ``record``, checked again against ``RunRecord`` (a field set to
    a wrong type raises pydantic.ValidationError): what is written can always be read."""
    data = record.to_json()
    RunRecord.model_validate(data)
    return json_bytes(data)


def write_run_info(run_dir: Path, record: RunRecord) -> None:
    """Atomically write ``record`` as ``run_dir/run.json`` (``run_info_bytes``)."""
    data = run_info_bytes(record)
    atomic_write(Path(run_dir) / "run.json", lambda f: f.write(data))


def load_finished_run(
    run_dir: Path, statuses: tuple[str, ...] = FINISHED
) -> tuple[dict[str, Any], RunRecord]:
    """(raw config, run.json) of a run whose status is one of ``statuses``; else RunFolderError."""
    config, record = load_run_info(run_dir)
    status = record.status
    if status not in statuses:
        raise RunFolderError(
            f"{run_dir}: the run is not finished (status: {status}); this needs a "
            f"{' or '.join(statuses)} run"
        )
    if not (Path(run_dir) / "model.npz").is_file():
        raise RunFolderError(f"{run_dir}: model.npz is missing")
    return config, record


def load_model_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    """The arrays of ``model.npz`` (weights W0, b0, ...)."""
    return read_npz(Path(run_dir) / "model.npz", "model file")


def read_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    """Every array of the .npz file ``path`` (no pickles), each checked before it is read: an
    array whose header claims more bytes than its member of the zip holds (a crafted file
    could claim terabytes) is refused. RunFolderError, one line: "``path``: unreadable
    ``what`` (why)"."""
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                with archive.open(member) as f:
                    _check_npy_header(f, member.file_size, member.filename)
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # truncated: BadZipFile
        raise RunFolderError(f"{path}: unreadable {what} ({one_line(exc)})") from None


def _check_npy_header(f: IO[bytes], size: int, name: str) -> None:
    """ValueError unless the .npy header read from ``f`` describes at most ``size`` bytes."""
    fmt = np.lib.format
    read_header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
    version = fmt.read_magic(f)
    if version not in read_header:
        raise ValueError(f"{name}: .npy format {version} is not one this tool writes")
    shape, _, dtype = read_header[version](f)
    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if claimed > size:
        raise ValueError(f"{name} claims a {shape} array ({claimed:,} bytes) in {size:,} bytes")
