"""cli/output.py: the user's output paths (--md, --csv, --html ...) are written through, never
replaced: a symlink stays a symlink, a hard link sees the new content, a FIFO's reader and a
terminal get the bytes, a folder is refused, a failed write is one line, and - is stdout.

Every file written here is under tmp_path: no real /dev node is ever a target (CI runs as root,
and a regression would replace it)."""

from __future__ import annotations

import errno
import os
import select
import stat
import threading
import tty
from pathlib import Path
from typing import Any

import pytest
from helpers import assert_one_line_error, invoke

from scratchnn_cli.cli import output


def test_a_symlink_at_the_path_stays_a_symlink_and_its_target_gets_the_content(
    small_run: Path, tmp_path: Path
) -> None:
    target, link = tmp_path / "target.md", tmp_path / "link.md"
    target.write_text("old\n", encoding="utf-8")
    link.symlink_to(target)
    result = invoke("compare", small_run, "--md", link)
    assert result.exit_code == 0, result.output
    assert f"wrote {link}" in result.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    expected = invoke("compare", small_run, "--md", "-").stdout
    assert expected.startswith("| name |")
    assert target.read_text(encoding="utf-8") == expected


def test_an_existing_file_is_written_in_place_not_replaced(small_run: Path, tmp_path: Path) -> None:
    """A hard link to the file sees the new content: the same inode was written."""
    path, other_name = tmp_path / "table.csv", tmp_path / "hard-link.csv"
    path.write_text("a much longer old content than the table will ever be\n" * 50)
    os.link(path, other_name)
    inode = path.stat().st_ino
    assert invoke("compare", small_run, "--csv", path).exit_code == 0
    assert path.stat().st_ino == inode
    assert other_name.read_text(encoding="utf-8").startswith("name,")
    assert "old content" not in other_name.read_text(encoding="utf-8")  # truncated first


def test_a_fifo_reader_receives_the_bytes(small_run: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as f:
            received.append(f.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    result = invoke("compare", small_run, "--csv", fifo)
    reader.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert not reader.is_alive(), "the FIFO's reader never got an end of file"
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # still a FIFO, not a regular file
    assert received == [invoke("compare", small_run, "--csv", "-").stdout.encode()]
    assert received[0].startswith(b"name,")


def test_a_terminal_is_written_to_directly(tmp_path: Path) -> None:
    """A character device (a pseudo-terminal here, where no file can be created beside it)."""
    master, slave = os.openpty()
    try:
        tty.setraw(slave)  # no "\n" -> "\r\n" on the way
        path = os.ttyname(slave)
        output.write_output(path, "| a | b |\n")
        got = b""
        while len(got) < 10 and select.select([master], [], [], 10)[0]:
            got += os.read(master, 100)
        assert got == b"| a | b |\n"
        assert stat.S_ISCHR(os.stat(path).st_mode)
    finally:
        os.close(master)
        os.close(slave)


def test_a_folder_path_is_refused_with_exit_2(small_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    line = assert_one_line_error(invoke("compare", small_run, "--html", folder), 2)
    assert f"{folder}: is a folder" in line
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_a_failed_write_is_one_line_exit_1(
    small_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What /dev/full does (ENOSPC on write), without touching /dev/full."""

    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(output.os, "write", full)
    path = tmp_path / "table.md"
    line = assert_one_line_error(invoke("compare", small_run, "--md", path), 1)
    assert line.endswith(f"{path}: could not write ([Errno 28] No space left on device)")


def test_dash_is_stdout_for_the_page_too(small_run: Path) -> None:
    result = invoke("compare", small_run, "--html", "-")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("<!DOCTYPE html>")
    assert "wrote" not in result.stderr
