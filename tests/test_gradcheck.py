"""``scratchnn gradcheck``: the configs of configs/ pass, a broken backward pass fails with exit 4,
any layer list is checked, and bad input (a config, a tolerance, a network too big) is one line
with exit 2."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import (
    CONFIGS,
    LAYERS_CONFIG,
    SMALL_CONFIG,
    assert_no_traceback,
    assert_one_line_error,
    invoke,
    write_config,
)

from scratchnn_cli.nn.layers.activations import LeakyReLU, Sigmoid, Tanh

# --------------------------------------------------------------------------- configs


GRADCHECK_OVERRIDES = ["--set", "model.activation=tanh", "--set", "train.l2=0.01"]


@pytest.mark.parametrize("config", ["circles_shallow.yaml", "digits_softmax.yaml"])
def test_gradcheck_passes(config: str) -> None:
    result = invoke("gradcheck", CONFIGS / config, *GRADCHECK_OVERRIDES)
    assert result.exit_code == 0, result.output
    assert_no_traceback(result)
    assert "gradient check" in result.stdout
    assert "relative error" in result.stdout
    assert "passed" in result.stdout
    assert "FAIL" not in result.stdout
    # one row per W and b of each of the two layers
    assert result.stdout.count(" ok") >= 4, result.stdout


def test_gradcheck_fails_with_4_on_a_broken_backprop(monkeypatch: pytest.MonkeyPatch) -> None:
    def wrong_derivative(self: Sigmoid, Z: np.ndarray, A: np.ndarray, dA: np.ndarray) -> Any:
        return dA * A  # forgets the (1 - A) factor

    monkeypatch.setattr(Sigmoid, "dZ", wrong_derivative)
    result = invoke("gradcheck", CONFIGS / "circles_shallow.yaml")
    assert result.exit_code == 4, result.output
    assert_no_traceback(result)
    assert "FAILED" in result.stdout
    assert "FAIL" in result.stdout


def test_gradcheck_of_a_bad_config_is_exit_2(tmp_path: Path) -> None:
    config = write_config(tmp_path, SMALL_CONFIG.format(name="g", max_iterations=100))
    assert_one_line_error(invoke("gradcheck", config, "--set", "model.activation=swish"))


# --------------------------------------------------------------------------- layer lists


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


def gradcheck_rows(stdout: str) -> dict[tuple[int, str, str, str], str]:
    """(layer, description, param, shape) -> 'ok' or 'FAIL', from the printed table."""
    rows = {}
    for line in stdout.splitlines():
        match = GRADCHECK_ROW.search(line)
        if match:
            layer, description, param, shape, verdict = match.groups()
            rows[(int(layer), description, param, shape)] = verdict
    return rows


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


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("tolerance", ["nan", "-1"])
def test_gradcheck_refuses_a_tolerance_nothing_passes(tolerance: str) -> None:
    result = invoke("gradcheck", CONFIGS / "circles_shallow.yaml", "--tolerance", tolerance)
    line = assert_one_line_error(result)  # was: every row FAIL, exit 4
    assert line == f"error: --tolerance must be a number >= 0 (got {float(tolerance):g})"


def test_gradcheck_refuses_a_network_too_big_for_memory() -> None:
    result = invoke("gradcheck", CONFIGS / "circles_shallow.yaml", "--set", "model.struct=[1e12]")
    line = assert_one_line_error(result)  # was: exit 1, MemoryError
    assert line.startswith("error: model: this network and its data need ~"), line
