"""The commands that inspect a spec's network without training it: ``gradcheck`` on any layer
list, and ``summary``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import invoke
from typer.testing import Result

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


def assert_one_line_error(result: Result, code: int = 2) -> str:
    """Exit ``code``, exactly one non-empty output line, which is the error; no traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:"), lines[0]
    return lines[0]


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


@pytest.mark.xfail(
    strict=True,
    reason="config/schema.py LayerSpec: the discriminator runs before _type_only, so a bare "
    "'relu' is refused; nesting Annotated[Annotated[union, Field(discriminator)], "
    "BeforeValidator(_type_only)] fixes it (then remove this marker)",
)
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
