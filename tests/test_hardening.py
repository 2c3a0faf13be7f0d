"""What a tester trying to break the tool met, one class per section: text from data reaching
the terminal, crafted run files, read-only run folders, runs whose checkpoint or data changed,
and the CLI's first-hour messages. Each test fails without its fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from helpers import SMALL_CONFIG, invoke

from scratchnn_cli.report.text import cell, printable

# --------------------------------------------------------------------------- terminal text

TITLE = "\x1b]0;owned\x07"  # an OSC sequence: retitles the terminal
CLEAR = "\x1b[2J"  # clears the screen


def test_printable_shows_control_characters_as_escapes() -> None:
    assert printable(f"a{TITLE}b") == "a\\x1b]0;owned\\x07b"
    assert printable("x\ny\rz\t") == "x\\ny\\rz\\t"
    assert printable("left\u202eright") == "left\\u202eright"  # bidi override
    assert printable("Shirt é 日本 [/] $x$") == "Shirt é 日本 [/] $x$"  # printable stays
    assert cell("[/]").plain == "[/]"  # a Text: never parsed as markup


def csv_run(tmp_path: Path, names: tuple[str, str]) -> Path:
    """A finished run on a CSV whose two class names are ``names``."""
    rng = np.random.default_rng(0)
    rows = ["x1,x2,label"]
    for i in range(60):
        c = i % 2
        x = rng.normal(2.0 * c, 0.5, size=2)
        rows.append(f'{x[0]:.4f},{x[1]:.4f},"{names[c]}"')
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text(
        SMALL_CONFIG.format(name="hostile", max_iterations=200).replace(
            "dataset: blobs400", f"dataset: {tmp_path / 'data.csv'}"
        ),
        encoding="utf-8",
    )
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    return next((tmp_path / "runs").iterdir())


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
