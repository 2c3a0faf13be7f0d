"""What a tester trying to break the tool met, one class per section: text from data reaching
the terminal, crafted run files, read-only run folders, runs whose checkpoint or data changed,
and the CLI's first-hour messages. Each test fails without its fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import SMALL_CONFIG, assert_one_line_error, invoke

from scratchnn_cli.report.text import cell, printable
from scratchnn_cli.runs import read_json

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


# --------------------------------------------------------------------------- evaluate / report


@pytest.fixture(scope="module")
def blobs_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("blobs")
    config = tmp / "c.yaml"
    config.write_text(SMALL_CONFIG.format(name="small", max_iterations=300), encoding="utf-8")
    result = invoke("train", config, "--runs-dir", tmp / "runs", "--set", "data.train_on=train+val")
    assert result.exit_code == 0, result.output
    return next((tmp / "runs").iterdir())


def test_evaluate_keeps_one_file_per_split(blobs_run: Path) -> None:
    """--split val no longer overwrites the test scores; a train+val run's val split is not
    held out, and evaluate says so."""
    test = invoke("evaluate", blobs_run)
    assert test.exit_code == 0, test.output
    assert "not a held-out score" not in test.output
    val = invoke("evaluate", blobs_run, "--split", "val")
    assert val.exit_code == 0, val.output
    assert "note: the model was trained on the val split: this is not a held-out score" in (
        " ".join(val.output.split())
    )
    assert read_json(blobs_run / "evaluation-test.json")["split"] == "test"
    scored = read_json(blobs_run / "evaluation-val.json")
    assert scored["split"] == "val" and scored["held_out"] is False
    assert val.output.splitlines()[-1] == str(blobs_run / "evaluation-val.json")


def test_evaluate_on_a_folder_it_cannot_write_still_shows_the_scores(
    blobs_run: Path, tmp_path: Path
) -> None:
    """A run folder evaluate cannot write into (here: a folder where its file goes, which
    stops root too): the scores are printed, then one 'could not write' line, exit 1."""
    import shutil

    run_dir = tmp_path / blobs_run.name
    shutil.copytree(blobs_run, run_dir)
    (run_dir / "evaluation-test.json").unlink(missing_ok=True)
    (run_dir / "evaluation-test.json").mkdir()
    result = invoke("evaluate", run_dir)
    assert result.exit_code == 1, result.output
    assert "test accuracy: " in result.output and "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"error: {run_dir / 'evaluation-test.json'}: could not write ("), last
    assert "internal error" not in result.output


def test_report_on_a_folder_it_cannot_write_is_one_line(blobs_run: Path, tmp_path: Path) -> None:
    import shutil

    run_dir = tmp_path / blobs_run.name
    shutil.copytree(blobs_run, run_dir)
    (run_dir / "report.html").mkdir()
    result = invoke("report", run_dir)
    line = assert_one_line_error(result, code=1)
    assert line.startswith(f"error: {run_dir / 'report.html'}: could not write ("), line


def test_evaluate_refuses_a_run_whose_data_changed(tmp_path: Path) -> None:
    """The CSV a run trained on was edited: its splits would be other splits, so evaluate
    refuses as --resume does (it printed a test score on another split and exited 0)."""
    run_dir = csv_run(tmp_path, ("a", "b"))
    data = tmp_path / "data.csv"
    data.write_text(data.read_text(encoding="utf-8").replace("\n0.", "\n1.", 3), encoding="utf-8")
    result = invoke("evaluate", run_dir)
    line = assert_one_line_error(result, code=2)
    assert "the data differs from what the run was trained on" in line
    assert not list(run_dir.glob("evaluation*.json"))
