"""nn/layers/batchnorm.py: batchnorm against a naive loop implementation written here, its
gradients (training and evaluation) by central differences, its running statistics (the momentum,
model state that round-trips), and the mini-batches it needs.

Shapes are channels last (NHWC): images (m, H, W, C), or rows (m, n)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import (
    FORWARD_TOL,
    assert_one_line_error,
    built,
    check_layer_gradients,
    digits_spec,
    in_network,
    invoke,
    run_folders,
)

import scratchnn_cli.assembly as assembly
from scratchnn_cli.config import validate_config
from scratchnn_cli.errors import ConfigError
from scratchnn_cli.nn.layers import (
    BatchNorm,
    Conv2D,
    Flatten,
    ReLU,
)
from scratchnn_cli.nn.network import Network

# --------------------------------------------------------------------------- naive references


def channel_values(X: np.ndarray, c: int) -> list[float]:
    """Every value of feature / channel ``c`` (the last axis) in the batch."""
    return [X[idx + (c,)] for idx in np.ndindex(X.shape[:-1])]


def naive_batch_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per channel: mean, biased variance, unbiased variance over every axis but the last."""
    C = X.shape[-1]
    mean, var, unbiased = np.zeros(C), np.zeros(C), np.zeros(C)
    for c in range(C):
        values = channel_values(X, c)
        N = len(values)
        mu = sum(values) / N
        squares = sum((v - mu) ** 2 for v in values)
        mean[c], var[c], unbiased[c] = mu, squares / N, squares / (N - 1)
    return mean, var, unbiased


def naive_batchnorm(
    X: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    eps: float,
    mean: np.ndarray | None = None,
    var: np.ndarray | None = None,
) -> np.ndarray:
    """Training (mean, var None: the batch's, biased) or evaluation (the given statistics)."""
    if mean is None:
        mean, var, _ = naive_batch_stats(X)
    out = np.zeros_like(X)
    for idx in np.ndindex(X.shape):
        c = idx[-1]
        out[idx] = gamma[c] * (X[idx] - mean[c]) / math.sqrt(var[c] + eps) + beta[c]
    return out


# --------------------------------------------------------------------------- forward


@pytest.mark.parametrize("shape", [(6, 4), (3, 5, 7, 3)], ids=["dense", "image"])
def test_batchnorm_forward_equals_the_naive_loops(shape: tuple[int, ...]) -> None:
    bn, _ = built(BatchNorm(), shape[1:])
    gamma, beta = bn.params["gamma"], bn.params["beta"]
    rng = np.random.default_rng(4)
    X = rng.normal(2.0, 3.0, size=shape)
    np.testing.assert_allclose(
        bn.forward(X, training=True), naive_batchnorm(X, gamma, beta, 1e-5), **FORWARD_TOL
    )
    bn.forward(rng.normal(-1.0, 0.5, size=shape), training=True)  # running stats move on
    mean, var = bn.state["running_mean"].copy(), bn.state["running_var"].copy()
    assert not np.allclose(mean, 0.0) and not np.allclose(var, 1.0)
    X2 = rng.normal(size=shape)
    np.testing.assert_allclose(
        bn.forward(X2, training=False),
        naive_batchnorm(X2, gamma, beta, 1e-5, mean, var),
        **FORWARD_TOL,
    )
    # evaluation does not touch the running statistics
    np.testing.assert_array_equal(bn.state["running_mean"], mean)
    np.testing.assert_array_equal(bn.state["running_var"], var)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize(
    "shape", [(6, 4), (3, 5, 7, 3), (2, 3, 3, 2)], ids=["dense", "image", "small-image"]
)
def test_batchnorm_training_gradients_match_central_differences(shape: tuple[int, ...]) -> None:
    bn, _ = built(BatchNorm(), shape[1:])
    X = np.random.default_rng(18).normal(1.0, 2.0, size=shape)
    check_layer_gradients(bn, X, training=True)


@pytest.mark.parametrize("shape", [(6, 4), (3, 5, 7, 3)], ids=["dense", "image"])
def test_batchnorm_evaluation_gradients_match_central_differences(shape: tuple[int, ...]) -> None:
    """After some training-mode calls (running statistics no longer 0 / 1) evaluation is an
    affine map of the input with the running statistics as constants."""
    bn, _ = built(BatchNorm(momentum=0.5), shape[1:])
    rng = np.random.default_rng(19)
    for _ in range(3):
        bn.forward(rng.normal(3.0, 2.0, size=shape), training=True)
    assert np.all(np.abs(bn.state["running_mean"]) > 0.5)
    assert np.all(np.abs(bn.state["running_var"] - 1.0) > 0.5)
    check_layer_gradients(bn, rng.normal(size=shape), training=False)


# --------------------------------------------------------------------------- running statistics


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 5, 2)], ids=["dense", "image"])
def test_batchnorm_running_statistics_follow_the_momentum(shape: tuple[int, ...]) -> None:
    bn, _ = built(BatchNorm(), shape[1:])
    C = shape[-1]
    np.testing.assert_array_equal(bn.state["running_mean"], np.zeros(C))
    np.testing.assert_array_equal(bn.state["running_var"], np.ones(C))
    rng = np.random.default_rng(50)
    X1 = rng.normal(4.0, 3.0, size=shape)
    mean1, _, unbiased1 = naive_batch_stats(X1)
    bn.forward(X1, training=True)
    expected_mean = 0.9 * 0.0 + 0.1 * mean1
    expected_var = 0.9 * 1.0 + 0.1 * unbiased1
    np.testing.assert_allclose(bn.state["running_mean"], expected_mean, rtol=1e-12)
    np.testing.assert_allclose(bn.state["running_var"], expected_var, rtol=1e-12)
    # the unbiased variance, not the biased one (they differ by N / (N - 1))
    N = math.prod(shape[:-1])
    assert not np.allclose(bn.state["running_var"], 0.9 + 0.1 * unbiased1 * (N - 1) / N)

    X2 = rng.normal(-2.0, 0.5, size=shape)
    mean2, _, unbiased2 = naive_batch_stats(X2)
    bn.forward(X2, training=True)
    expected_mean = 0.9 * expected_mean + 0.1 * mean2
    expected_var = 0.9 * expected_var + 0.1 * unbiased2
    np.testing.assert_allclose(bn.state["running_mean"], expected_mean, rtol=1e-12)
    np.testing.assert_allclose(bn.state["running_var"], expected_var, rtol=1e-12)

    # evaluation normalises with them
    X3 = rng.normal(size=shape)
    gamma, beta = bn.params["gamma"], bn.params["beta"]
    np.testing.assert_allclose(
        bn.forward(X3, training=False),
        naive_batchnorm(X3, gamma, beta, 1e-5, expected_mean, expected_var),
        **FORWARD_TOL,
    )


def test_running_statistics_are_model_state_and_round_trip() -> None:
    def make(seed: int) -> Network:
        return in_network([Conv2D(2, kernel=3), BatchNorm(), ReLU(), Flatten()], (5, 6, 1), seed)

    net = make(60)
    bn = net.layers[1]
    rng = np.random.default_rng(61)
    X = rng.normal(1.0, 2.0, size=(4, 5, 6, 1))
    for _ in range(2):
        net.forward(X, training=True)
    state = net.state()
    assert sorted(state) == sorted(
        ["W0", "b0", "gamma1", "beta1", "running_mean1", "running_var1", "W2", "b2"]
    )
    np.testing.assert_array_equal(state["running_mean1"], bn.state["running_mean"])
    np.testing.assert_array_equal(state["running_var1"], bn.state["running_var"])
    assert not np.allclose(state["running_mean1"], 0.0)
    assert sorted(net.buffers()) == ["running_mean1", "running_var1"]

    other = make(62)
    X_eval = rng.normal(size=(3, 5, 6, 1))
    assert not np.allclose(other.forward(X_eval), net.forward(X_eval))
    other.load_state(state)
    for name, array in other.state().items():
        np.testing.assert_array_equal(array, state[name], err_msg=name)
    np.testing.assert_array_equal(other.forward(X_eval), net.forward(X_eval))

    # state() is a copy: training on does not change what was saved
    net.forward(X + 1.0, training=True)
    assert not np.array_equal(net.state()["running_mean1"], state["running_mean1"])

    bad = dict(state)
    bad["running_var1"] = np.ones(3)
    with pytest.raises(ValueError, match=r"running_var1: shape \(3,\) does not match \(2,\)"):
        other.load_state(bad)
    del bad["running_mean1"]
    with pytest.raises(KeyError, match="running_mean1 is missing"):
        other.load_state(bad)


# --------------------------------------------------------------------------- validation


def test_batchnorm_with_batches_of_one_is_refused(tmp_path: Path, digits_dataset: Any) -> None:
    layers = [{"type": "conv2d", "filters": 2, "kernel": 3}, {"type": "batchnorm"}, "flatten"]
    config = validate_config(digits_spec(layers, batch_size=1), "spec.yaml")
    with pytest.raises(ConfigError, match=r"batchnorm needs mini-batches \(train\.batch_size >= 2"):
        assembly.check_compatible(config, digits_dataset)
    assembly.check_compatible(
        validate_config(digits_spec(layers, batch_size=2), "s"), digits_dataset
    )

    path = tmp_path / "bn.yaml"
    path.write_text(yaml.safe_dump(digits_spec(layers, batch_size=1)), encoding="utf-8")
    line = assert_one_line_error(invoke("train", path, "--runs-dir", tmp_path / "runs"))
    assert "batchnorm needs mini-batches" in line
    assert not run_folders(tmp_path / "runs")
