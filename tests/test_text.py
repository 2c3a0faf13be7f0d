"""report/text.py: text that comes from data (class names, run names, folder names) reaches
the terminal escaped and literal, never as control codes or Rich markup."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from helpers import csv_run, invoke
from rich.console import Console

from scratchnn_cli.report.progress import SweepProgress, live_line
from scratchnn_cli.report.text import cell, printable

# --------------------------------------------------------------------------- text from data


TITLE = "\x1b]0;owned\x07"  # an OSC sequence: retitles the terminal
CLEAR = "\x1b[2J"  # clears the screen


def test_printable_shows_control_characters_as_escapes() -> None:
    assert printable(f"a{TITLE}b") == "a\\x1b]0;owned\\x07b"
    assert printable("x\ny\rz\t") == "x\\ny\\rz\\t"
    assert printable("left\u202eright") == "left\\u202eright"  # bidi override
    assert printable("Shirt é 日本 [/] $x$") == "Shirt é 日本 [/] $x$"  # printable stays
    assert cell("[/]").plain == "[/]"  # a Text: never parsed as markup


def test_class_names_from_data_never_drive_the_terminal(tmp_path: Path) -> None:
    """A class named with an OSC title sequence and one that reads as Rich markup: evaluate
    shows both escaped and literal (the markup one crashed it with exit 1)."""
    run_dir = csv_run(tmp_path, (f"{TITLE}{CLEAR}", "[/]"))
    result = invoke("evaluate", run_dir)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b]0;owned\\x07\\x1b[2J" in result.output
    assert "[/]" in result.output
    assert "test accuracy:" in result.output


# -------------------------------------------------------------------- names in the commands' output


ESC = "\x1b"


def test_compare_shows_a_run_name_with_control_characters_escaped(
    small_run: Path, tmp_path: Path
) -> None:
    evil = tmp_path / "evil"
    shutil.copytree(small_run, evil)
    info = json.loads((evil / "run.json").read_text(encoding="utf-8"))
    info["name"] = "x\x1b[2Jy"
    (evil / "run.json").write_text(json.dumps(info), encoding="utf-8")
    result = invoke("compare", evil, small_run)
    assert result.exit_code == 0, result.output
    assert ESC not in result.stdout
    assert "x\\x1b[2Jy" in result.stdout


def test_runs_lists_a_folder_name_with_control_characters_escaped(
    small_run: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(small_run, runs / "run\x1b]0;title\x07x")
    result = invoke("runs", runs)
    assert result.exit_code == 0, result.output
    assert ESC not in result.stdout and "\x07" not in result.stdout
    assert "run\\x1b]0;title\\x07x" in result.stdout


def test_progress_displays_show_names_literally() -> None:
    line = live_line("a\x1b[2J[bold]b", None, 100, [], None, 0.0, None, 80)
    assert line.plain.startswith("a\\x1b[2J[bold]b")
    console = Console(width=120, file=io.StringIO(), force_terminal=True, color_system=None)
    with SweepProgress(console, "[red]s\x1bx", 2) as progress:
        progress.point_done("best 0.9: model.activation=\x1b[31m")
        progress.say("point 1: \x1b[2J")
    text = console.file.getvalue()
    assert "sweep [red]s\\x1bx" in text and "\\x1b[31m" in text and "point 1: \\x1b[2J" in text
    assert "\x1b[2J" not in text and "\x1b[31m" not in text
