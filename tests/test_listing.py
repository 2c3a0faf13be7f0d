"""runs/listing.py and ``scratchnn runs``: the runs of a folder with their status and accuracy,
sweep folders named and listed, and folders that hold no runs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from helpers import (
    DIVERGING_CONFIG,
    SMALL_CONFIG,
    assert_no_traceback,
    assert_one_line_error,
    invoke,
    read_json,
    run_folders,
    write_config,
)

# --------------------------------------------------------------------------- sweep folders


def test_runs_names_the_folders_of_runs_and_lists_them(small_run: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(small_run, runs / small_run.name)
    for k in range(3):
        shutil.copytree(small_run, runs / "sweep-x-20261206-065100" / f"sweep-x-p00{k}-f0")
    (runs / "notes").mkdir()  # no runs in it: not listed
    result = invoke("runs", runs)
    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.stdout.splitlines() if "sweep-x-20261206-065100/" in line]
    assert re.search(r"│ +3 │ 3 completed", row), row
    assert "notes" not in result.stdout
    assert "list one with scratchnn runs" in " ".join(result.stdout.split())
    inside = invoke("runs", runs / "sweep-x-20261206-065100")
    assert inside.exit_code == 0, inside.output
    assert all(f"sweep-x-p00{k}-f0" in inside.stdout for k in range(3))


def test_a_folder_with_only_sweeps_says_where_the_runs_are(small_run: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(small_run, runs / "reproduce-20261206-065100" / small_run.name)
    result = invoke("runs", runs)
    assert result.exit_code == 0, result.output
    assert f"no runs directly in {runs}" in result.stdout
    assert "reproduce-20261206-065100" in result.stdout and "1 completed" in result.stdout


# --------------------------------------------------------------------------- status and accuracy


@pytest.mark.slow
def test_runs_lists_status_and_accuracy(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    good = write_config(tmp_path, SMALL_CONFIG.format(name="a", max_iterations=200), "a.yaml")
    assert invoke("train", good, "--runs-dir", runs_dir).exit_code == 0
    bad = write_config(tmp_path, DIVERGING_CONFIG.replace("name: boom", "name: b"), "b.yaml")
    assert invoke("train", bad, "--runs-dir", runs_dir).exit_code == 3
    (runs_dir / "not-a-run").mkdir()  # ignored: no run.json
    completed, diverged = run_folders(runs_dir)[:2]
    if completed.name.endswith("-b"):
        completed, diverged = diverged, completed
    result = invoke("runs", runs_dir)
    assert result.exit_code == 0, result.output
    assert_no_traceback(result)
    table = result.stdout
    assert "not-a-run" not in table
    for folder, status in ((completed, "completed"), (diverged, "diverged")):
        row = next(line for line in table.splitlines() if folder.name in line)
        assert status in row, row
        accuracy = read_json(folder / "metrics.json")["test"]["accuracy"]
        assert f"{accuracy:.4f}" in row, row


def test_runs_of_a_missing_folder_is_exit_2(tmp_path: Path) -> None:
    assert_one_line_error(invoke("runs", tmp_path / "nowhere"))


def test_runs_of_an_empty_folder_says_so(tmp_path: Path) -> None:
    result = invoke("runs", tmp_path)
    assert result.exit_code == 0, result.output
    assert "no runs" in result.stdout
