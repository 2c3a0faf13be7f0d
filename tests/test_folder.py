"""runs/folder.py: the runs folder and the run folders made in it, atomic writes (whole files,
old or new, never half) and the modes of the files written."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import (
    ENOSPC,
    SMALL_CONFIG,
    FailingOs,
    assert_one_line_error,
    invoke,
    temp_files,
    write_config,
)

from scratchnn_cli import runs

# ------------------------------------------------------------------ permissions and the runs folder


def test_run_files_follow_the_umask(tmp_path: Path) -> None:
    """Every file was created 0600 whatever the umask: a shared runs folder (a Dask cluster's)
    could not be read by the others."""
    import os

    config = tmp_path / "c.yaml"
    config.write_text(SMALL_CONFIG.format(name="shared", max_iterations=200), encoding="utf-8")
    for umask, mode in ((0o022, 0o644), (0o077, 0o600)):
        old = os.umask(umask)
        try:
            result = invoke("train", config, "--runs-dir", tmp_path / f"runs{umask:o}")
        finally:
            os.umask(old)
        assert result.exit_code == 0, result.output
        run_dir = next((tmp_path / f"runs{umask:o}").iterdir())
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in run_dir.iterdir()}
        assert set(modes.values()) == {mode}, (umask, modes)


@pytest.mark.parametrize("below", [False, True], ids=["itself", "a parent"])
def test_a_dangling_symlink_as_the_runs_folder_is_named(tmp_path: Path, below: bool) -> None:
    """It was reported as 'is a file', naming its parent."""
    config = tmp_path / "c.yaml"
    config.write_text(SMALL_CONFIG.format(name="x", max_iterations=200), encoding="utf-8")
    link = tmp_path / "runs"
    link.symlink_to(tmp_path / "gone")
    runs_dir = link / "sub" if below else link
    line = assert_one_line_error(invoke("train", config, "--runs-dir", runs_dir))
    assert f"error: {link}: is a symbolic link to {tmp_path / 'gone'}, which does not exist" in (
        line
    ), line


# --------------------------------------------------------------------- a runs folder that is a file


@pytest.mark.parametrize("below", ["", "runs"], ids=["the-file", "a-folder-below-it"])
def test_a_runs_dir_that_is_a_file_is_bad_input(tmp_path: Path, below: str) -> None:
    """--runs-dir naming a file (or a folder inside one): exit 2, one line naming the file,
    nothing created or changed."""
    config = write_config(tmp_path, SMALL_CONFIG.format(name="f", max_iterations=100))
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = invoke("train", config, "--runs-dir", blocker / below if below else blocker)
    line = assert_one_line_error(result, 2)
    assert f"{blocker}: is a file, not a folder" in line, line
    assert "internal error" not in line, line
    assert blocker.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# --------------------------------------------------------------------------- atomic writes


class _Halfway(Exception):
    pass


@pytest.mark.parametrize("error", [_Halfway, KeyboardInterrupt, OSError])
def test_atomic_write_keeps_the_old_file_when_the_writer_fails(
    tmp_path: Path, error: type[BaseException]
) -> None:
    target = tmp_path / "run.json"
    target.write_bytes(b'{"status": "running"}\n')

    def write(f: Any) -> None:
        f.write(b'{"status": "comp')
        f.flush()
        raise error("halfway")

    with pytest.raises(error, match="^halfway$"):
        runs.atomic_write(target, write)
    assert target.read_bytes() == b'{"status": "running"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_atomic_write_keeps_the_old_file_when_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "model.npz"
    runs.write_npz(target, {"W0": np.zeros((2, 2))})
    old = target.read_bytes()
    monkeypatch.setattr(runs.folder, "os", FailingOs(1))
    with pytest.raises(OSError, match="No space left"):
        runs.write_npz(target, {"W0": np.ones((2, 2))})
    assert target.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_atomic_write_replaces_the_file_and_leaves_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "history.csv"
    target.write_text("old\n")
    runs.write_text(target, "epoch,iteration,cost\n1,10,0.5\n")
    assert target.read_text() == "epoch,iteration,cost\n1,10,0.5\n"
    runs.write_text(tmp_path / "new.txt", "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv", "new.txt"]


class _SpyOs:
    """Stands in for ``os`` inside scratchnn_cli.runs.folder: records each fsync (by the path of
    the fd's file) and each rename, in the order they happen; ``fail`` names the call (and the
    file) that raises ENOSPC instead, e.g. ``("fsync", "b.txt")``."""

    def __init__(self, fail: tuple[str, str] | None = None) -> None:
        self.fail = fail
        self.events: list[tuple[str, str]] = []

    def _event(self, kind: str, name: str) -> None:
        self.events.append((kind, name))
        if self.fail == (kind, name):
            raise OSError(ENOSPC, "No space left on device")

    def fsync(self, fd: int) -> None:
        time.sleep(0.01)  # a slow disk: a rename must still wait for every fsync
        name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        self._event("fsync", name.split(".")[1] + "." + name.split(".")[2])  # .a.txt.xyz.tmp
        os.fsync(fd)

    def replace(self, src: Any, dst: Any) -> None:
        self._event("replace", Path(dst).name)
        os.replace(src, dst)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


NEW_FILES = [("a.txt", b"new a"), ("b.txt", b"new b"), ("c.txt", b"new c")]


def old_folder(tmp_path: Path) -> Path:
    """a.txt and b.txt in their old versions; no c.txt yet."""
    (tmp_path / "a.txt").write_bytes(b"old a")
    (tmp_path / "b.txt").write_bytes(b"old b")
    return tmp_path


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name an fd")
def test_write_files_fsyncs_every_file_before_any_rename_then_renames_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = old_folder(tmp_path)
    spy = _SpyOs()
    monkeypatch.setattr(runs.folder, "os", spy)
    runs.write_files(folder, NEW_FILES)
    kinds = [kind for kind, _ in spy.events]
    assert kinds == ["fsync"] * 3 + ["replace"] * 3, spy.events
    assert sorted(name for kind, name in spy.events if kind == "fsync") == [
        "a.txt",
        "b.txt",
        "c.txt",
    ]
    assert [name for kind, name in spy.events if kind == "replace"] == ["a.txt", "b.txt", "c.txt"]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == dict(NEW_FILES)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name an fd")
def test_write_files_renames_nothing_when_an_fsync_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = old_folder(tmp_path)
    spy = _SpyOs(fail=("fsync", "c.txt"))
    monkeypatch.setattr(runs.folder, "os", spy)
    with pytest.raises(OSError, match="No space left"):
        runs.write_files(folder, NEW_FILES)
    assert [kind for kind, _ in spy.events] == ["fsync"] * 3  # all waited for, none renamed
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {
        "a.txt": b"old a",
        "b.txt": b"old b",
    }


@pytest.mark.parametrize("k", [1, 2, 3])
def test_write_files_keeps_the_old_versions_from_a_failed_rename_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, k: int
) -> None:
    folder = old_folder(tmp_path)
    monkeypatch.setattr(runs.folder, "os", FailingOs(k))
    with pytest.raises(OSError, match="No space left"):
        runs.write_files(folder, NEW_FILES)
    expected = {"a.txt": b"old a", "b.txt": b"old b"}
    expected.update(dict(NEW_FILES[: k - 1]))  # renamed before the failure
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == expected


@pytest.mark.parametrize("error", [KeyboardInterrupt, TypeError])
def test_write_files_leaves_no_temp_file_when_writing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: type[BaseException]
) -> None:
    folder = old_folder(tmp_path)
    real_fsync_all = runs.folder.fsync_all

    def fsync_all(fds: Any) -> None:
        assert len(temp_files(folder)) == 3  # the three temp files exist by then
        real_fsync_all(fds)
        raise error("halfway")

    monkeypatch.setattr(runs.folder, "fsync_all", fsync_all)
    with pytest.raises(error, match="^halfway$"):
        runs.write_files(folder, NEW_FILES)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {
        "a.txt": b"old a",
        "b.txt": b"old b",
    }


def test_write_files_leaves_no_thread_to_wait_for_at_exit(tmp_path: Path) -> None:
    """The fsync threads are kept between calls, but as daemons: a Ctrl-C while the interpreter
    exits must not land in a join of them (a traceback after 'error: interrupted')."""
    import threading

    runs.write_files(tmp_path, [("a.txt", b"a"), ("b.txt", b"b")])
    fsync = [t for t in threading.enumerate() if t.name == "scratchnn-fsync"]
    assert fsync and all(t.daemon for t in fsync)  # (other tests may leave threads of their own)


def _write_in_a_forked_child(folder: str) -> None:
    runs.write_files(Path(folder), [("child.txt", b"from the child")])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_write_files_works_in_a_forked_child(tmp_path: Path) -> None:
    """A child forked after the parent's fsync threads started has none of them: it must make
    its own (the parent's pool, copied, would take the work and never do it)."""
    import multiprocessing

    runs.write_files(tmp_path, [("parent.txt", b"x"), ("parent2.txt", b"y")])
    child = multiprocessing.get_context("fork").Process(
        target=_write_in_a_forked_child, args=(str(tmp_path),)
    )
    child.start()
    child.join(30)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0
    assert (tmp_path / "child.txt").read_bytes() == b"from the child"


@pytest.mark.parametrize("landing", [0, 1])
def test_ctrl_c_just_after_a_temp_file_is_created_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, landing: int
) -> None:
    """A Ctrl-C (KeyboardInterrupt) landing between the creation of a temp file and the code
    that tracks it (seen in CI once checkpoints came every few milliseconds: a SIGTERM left
    .checkpoint.npz.*.tmp). Simulated at the first and at the second file of a write."""
    import scratchnn_cli.runs.folder as run_files

    real_fdopen, calls = os.fdopen, []

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        calls.append(fd)
        if len(calls) == landing + 1:  # the temp file exists: the interrupt lands now
            os.close(fd)
            raise KeyboardInterrupt
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(run_files.os, "fdopen", fdopen)
    with pytest.raises(KeyboardInterrupt):
        run_files.write_files(tmp_path, [("a.txt", b"a"), ("b.txt", b"b")])
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    calls[:] = [-1] * landing  # atomic_write opens one file: let the interrupt land there
    with pytest.raises(KeyboardInterrupt):
        run_files.atomic_write(tmp_path / "c.txt", lambda f: f.write(b"c"))
    assert sorted(p.name for p in tmp_path.iterdir()) == []
