"""The commands that inspect a spec's network without training it: ``gradcheck`` on any layer
list, and ``summary``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_one_line_error, invoke

from scratchnn_cli.nn.layers.activations import LeakyReLU, Tanh

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

# blobs400: 3 features, 2 classes (so a sigmoid output: one unit); layers 0..6, output 7
LAYERS_CONFIG = """\
name: layers
seed: 0
data:
  dataset: blobs400
  split: [0.5, 0.25, 0.25]
model:
  layers:
    - {type: dense, units: 5}
    - {type: tanh}
    - {type: dense, units: 4}
    - {type: leaky_relu, alpha: 0.1}
    - {type: dropout, rate: 0.3}
    - {type: dense, units: 3}
    - {type: relu}
  sigma: 0.5
train:
  lr: 0.05
  max_iterations: 100
"""

# (layer index, description, param, shape) of every parameter array of LAYERS_CONFIG's net
LAYERS_PARAMS = {
    (0, "dense(5)", "W", "3x5"),
    (0, "dense(5)", "b", "5"),
    (2, "dense(4)", "W", "5x4"),
    (2, "dense(4)", "b", "4"),
    (5, "dense(3)", "W", "4x3"),
    (5, "dense(3)", "b", "3"),
    (7, "dense(1)", "W", "3x1"),
    (7, "dense(1)", "b", "1"),
}

GRADCHECK_ROW = re.compile(r"│ (\d+) (\S+)\s+│ (\w+)\s+│\s+([\dx]+) │.*│ (ok|FAIL)\s+│")


@pytest.fixture
def layers_config(tmp_path: Path) -> Path:
    path = tmp_path / "layers.yaml"
    path.write_text(LAYERS_CONFIG, encoding="utf-8")
    return path


def gradcheck_rows(stdout: str) -> dict[tuple[int, str, str, str], str]:
    """(layer, description, param, shape) -> 'ok' or 'FAIL', from the printed table."""
    rows = {}
    for line in stdout.splitlines():
        match = GRADCHECK_ROW.search(line)
        if match:
            layer, description, param, shape, verdict = match.groups()
            rows[(int(layer), description, param, shape)] = verdict
    return rows


# --------------------------------------------------------------------------- gradcheck


def test_a_bare_layer_name_stands_for_its_type(tmp_path: Path) -> None:
    path = tmp_path / "bare.yaml"
    text = LAYERS_CONFIG.replace("{type: tanh}", "tanh").replace("{type: relu}", "relu")
    path.write_text(text, encoding="utf-8")
    result = invoke("gradcheck", path)
    assert result.exit_code == 0, result.output
    assert set(gradcheck_rows(result.stdout)) == LAYERS_PARAMS


def test_gradcheck_passes_on_a_layer_list(layers_config: Path) -> None:
    result = invoke("gradcheck", layers_config)
    assert result.exit_code == 0, result.output
    assert "passed" in result.stdout
    rows = gradcheck_rows(result.stdout)
    assert set(rows) == LAYERS_PARAMS, result.stdout  # every dense layer's W and b, no others
    assert set(rows.values()) == {"ok"}, result.stdout


def test_gradcheck_fails_with_4_on_a_wrong_leaky_relu_backward(
    layers_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def without_alpha(self: LeakyReLU, Z: np.ndarray, A: np.ndarray, dA: np.ndarray) -> Any:
        return dA * (Z > 0)  # drops the slope alpha below 0

    monkeypatch.setattr(LeakyReLU, "dZ", without_alpha)
    result = invoke("gradcheck", layers_config)
    assert result.exit_code == 4, result.output
    assert "Traceback" not in result.output
    assert "FAILED" in result.stdout
    rows = gradcheck_rows(result.stdout)
    assert set(rows) == LAYERS_PARAMS, result.stdout
    # the layers before the leaky ReLU (index 3) get wrong gradients, those after it do not
    for (layer, *_), verdict in rows.items():
        assert verdict == ("FAIL" if layer < 3 else "ok"), result.stdout


def test_gradcheck_fails_on_a_nan_gradient(
    layers_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def nan_derivative(self: Tanh, Z: np.ndarray, A: np.ndarray, dA: np.ndarray) -> Any:
        return dA * np.nan

    monkeypatch.setattr(Tanh, "dZ", nan_derivative)
    result = invoke("gradcheck", layers_config)
    assert result.exit_code == 4, result.output
    assert "FAILED" in result.stdout and "passed" not in result.stdout
    assert gradcheck_rows(result.stdout)[(0, "dense(5)", "W", "3x5")] == "FAIL"


def test_gradcheck_of_a_layer_that_does_not_fit_is_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(LAYERS_CONFIG.replace("units: 4", "units: 0"), encoding="utf-8")
    line = assert_one_line_error(invoke("gradcheck", path))
    assert "model.layers" in line, line


# --------------------------------------------------------------------------- summary

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


# --------------------------------------------------------------------------- gradcheck: bad input


@pytest.mark.parametrize("tolerance", ["nan", "-1"])
def test_gradcheck_refuses_a_tolerance_nothing_passes(tolerance: str) -> None:
    result = invoke("gradcheck", CONFIGS / "circles_shallow.yaml", "--tolerance", tolerance)
    line = assert_one_line_error(result)  # was: every row FAIL, exit 4
    assert line == f"error: --tolerance must be a number >= 0 (got {float(tolerance):g})"


def test_gradcheck_refuses_a_network_too_big_for_memory() -> None:
    result = invoke("gradcheck", CONFIGS / "circles_shallow.yaml", "--set", "model.struct=[1e12]")
    line = assert_one_line_error(result)  # was: exit 1, MemoryError
    assert line.startswith("error: model: this network and its data need ~"), line
