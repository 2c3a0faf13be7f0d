"""``scratchnn summary``: a spec's network, layer by layer with its parameter counts, without
training it (the counts are those training records)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import CONFIGS, assert_one_line_error, invoke

SUMMARY_ROW = re.compile(r"^│\s*(\d+) │ (\S+)\s*│\s*([\dx]+) │\s*([\d,]+) │$")


def summary_rows(stdout: str) -> list[tuple[int, str, str, int]]:
    """(index, layer, output shape, params) per table row, in printed order."""
    rows = []
    for line in stdout.splitlines():
        match = SUMMARY_ROW.match(line.strip())
        if match:
            index, layer, shape, params = match.groups()
            rows.append((int(index), layer, shape, int(params.replace(",", ""))))
    return rows


def summary_total(stdout: str) -> int:
    match = re.search(r"^total: ([\d,]+) parameters", stdout, flags=re.MULTILINE)
    assert match, stdout
    return int(match.group(1).replace(",", ""))


def test_summary_of_circles_shallow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = CONFIGS / "circles_shallow.yaml"
    assert "struct: [5]" in config.read_text(encoding="utf-8")  # what the numbers below assume
    monkeypatch.chdir(tmp_path)
    result = invoke("summary", config)
    assert result.exit_code == 0, result.output
    # circles500: 2 features, 2 classes -> 2 -> dense(5) -> sigmoid -> dense(1) (sigmoid output)
    assert summary_rows(result.stdout) == [
        (0, "dense(5)", "5", 2 * 5 + 5),
        (1, "sigmoid", "5", 0),
        (2, "dense(1)", "1", 5 * 1 + 1),
    ], result.stdout
    assert summary_total(result.stdout) == 21
    assert "sigmoid output" in result.stdout
    assert list(tmp_path.iterdir()) == []  # trains and writes nothing (no runs/ folder)


def test_summary_applies_set(tmp_path: Path) -> None:
    result = invoke("summary", CONFIGS / "circles_shallow.yaml", "--set", "model.struct=[3]")
    assert result.exit_code == 0, result.output
    assert summary_rows(result.stdout) == [
        (0, "dense(3)", "3", 2 * 3 + 3),
        (1, "sigmoid", "3", 0),
        (2, "dense(1)", "1", 3 * 1 + 1),
    ], result.stdout
    assert summary_total(result.stdout) == 13


def test_summary_of_a_layer_list(layers_config: Path) -> None:
    result = invoke("summary", layers_config)
    assert result.exit_code == 0, result.output
    assert summary_rows(result.stdout) == [
        (0, "dense(5)", "5", 3 * 5 + 5),
        (1, "tanh", "5", 0),
        (2, "dense(4)", "4", 5 * 4 + 4),
        (3, "leaky_relu(alpha=0.1)", "4", 0),
        (4, "dropout(0.3)", "4", 0),
        (5, "dense(3)", "3", 4 * 3 + 3),
        (6, "relu", "3", 0),
        (7, "dense(1)", "1", 3 * 1 + 1),
    ], result.stdout
    assert summary_total(result.stdout) == 20 + 24 + 15 + 4


@pytest.mark.slow
def test_summary_matches_what_training_records(layers_config: Path, tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    trained = invoke(
        "train", layers_config, "--runs-dir", runs_dir, "--set", "train.max_iterations=5"
    )
    assert trained.exit_code == 0, trained.output
    (run_dir,) = runs_dir.iterdir()
    network = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["network"]
    result = invoke("summary", layers_config)
    assert summary_total(result.stdout) == network["parameters"]
    assert [(r[1], r[3]) for r in summary_rows(result.stdout)] == [
        (layer["layer"], layer["params"]) for layer in network["layers"]
    ]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--set", "model.struct=[0]"], "model.struct"),
        (["--set", "seed=2001-13-01"], "seed"),
        (["--set", "data.dataset=nowhere.csv"], "nowhere.csv"),
        (["--set", "model.struct=[1000000, 1000000]"], "GiB"),
    ],
)
def test_summary_of_a_bad_spec_is_one_line_exit_2(args: list[str], expected: str) -> None:
    line = assert_one_line_error(invoke("summary", CONFIGS / "circles_shallow.yaml", *args))
    assert expected in line, line


def test_summary_of_a_missing_file_is_exit_2(tmp_path: Path) -> None:
    line = assert_one_line_error(invoke("summary", tmp_path / "nope.yaml"))
    assert "not found" in line and "nope.yaml" in line, line
