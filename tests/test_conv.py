"""The CNN layers (conv2d, maxpool2d, avgpool2d, global_avgpool, batchnorm, dropout, flatten)
against naive loop implementations written here, finite-difference gradients of their
parameters and of their input, batchnorm's running statistics, the shape validation, an end to
end run of configs/digits_cnn.yaml (interrupted and resumed bit for bit) and float32.

Shapes are channels last (NHWC): images (m, H, W, C), conv kernels (kh, kw, C, F).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import assert_one_line_error, invoke, numeric_grad

import scratchnn_cli.build as build
import scratchnn_cli.experiment as experiment
from scratchnn_cli.config import build_config
from scratchnn_cli.data import load_dataset
from scratchnn_cli.errors import ConfigError
from scratchnn_cli.nn.layers import (
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Layer,
    MaxPool2D,
    ReLU,
    Tanh,
)
from scratchnn_cli.nn.layers.channels import column_sum, per_channel
from scratchnn_cli.nn.network import Network

ROOT = Path(__file__).resolve().parent.parent
DIGITS_CNN = ROOT / "configs" / "digits_cnn.yaml"

FORWARD_TOL = {"rtol": 1e-12, "atol": 1e-12}  # float64, only the order of the sums differs
GRAD_TOL = {"rtol": 1e-6, "atol": 1e-8}  # central differences, h = 1e-6


# --------------------------------------------------------------------------- naive references


def same_pads(size: int, k: int, s: int) -> tuple[int, int, int]:
    """TensorFlow's "same": (output size, padding before, padding after)."""
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2, total - total // 2


def naive_conv2d(
    X: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int, padding: str
) -> np.ndarray:
    m, H, Wd, C = X.shape
    kh, kw, _, F = W.shape
    s = stride
    if padding == "same":
        Ho, top, bottom = same_pads(H, kh, s)
        Wo, left, right = same_pads(Wd, kw, s)
    else:
        Ho, Wo, top, bottom, left, right = (H - kh) // s + 1, (Wd - kw) // s + 1, 0, 0, 0, 0
    Xp = np.zeros((m, H + top + bottom, Wd + left + right, C))
    for n in range(m):
        for y in range(H):
            for x in range(Wd):
                for c in range(C):
                    Xp[n, top + y, left + x, c] = X[n, y, x, c]
    out = np.zeros((m, Ho, Wo, F))
    for n in range(m):
        for y in range(Ho):
            for x in range(Wo):
                for f in range(F):
                    total = b[f]
                    for i in range(kh):
                        for j in range(kw):
                            for c in range(C):
                                total += Xp[n, s * y + i, s * x + j, c] * W[i, j, c, f]
                    out[n, y, x, f] = total
    return out


def pool_windows(H: int, W: int, size: int, stride: int) -> list[tuple[int, int, list]]:
    """(y, x, [(row, column) of each entry]) of every window that fits."""
    return [
        (y, x, [(stride * y + i, stride * x + j) for i in range(size) for j in range(size)])
        for y in range((H - size) // stride + 1)
        for x in range((W - size) // stride + 1)
    ]


def naive_pool(X: np.ndarray, size: int, stride: int, how: str) -> np.ndarray:
    m, H, W, C = X.shape
    windows = pool_windows(H, W, size, stride)
    Ho, Wo = windows[-1][0] + 1, windows[-1][1] + 1
    out = np.zeros((m, Ho, Wo, C))
    for n in range(m):
        for y, x, entries in windows:
            for c in range(C):
                values = [X[n, r, q, c] for r, q in entries]
                if how == "max":
                    best = values[0]
                    for v in values[1:]:
                        if v > best:
                            best = v
                    out[n, y, x, c] = best
                else:
                    total = 0.0
                    for v in values:
                        total += v
                    out[n, y, x, c] = total / len(values)
    return out


def naive_maxpool_backward(X: np.ndarray, dA: np.ndarray, size: int, stride: int) -> np.ndarray:
    """dA of each window split evenly among its tied maxima (d max(x, y) at x == y: 1/2 each)."""
    m, H, W, C = X.shape
    dX = np.zeros_like(X)
    for n in range(m):
        for y, x, entries in pool_windows(H, W, size, stride):
            for c in range(C):
                best = max(X[n, r, q, c] for r, q in entries)
                tied = [(r, q) for r, q in entries if X[n, r, q, c] == best]
                for r, q in tied:
                    dX[n, r, q, c] += dA[n, y, x, c] / len(tied)
    return dX


def naive_global_avgpool(X: np.ndarray) -> np.ndarray:
    m, H, W, C = X.shape
    out = np.zeros((m, C))
    for n in range(m):
        for c in range(C):
            total = 0.0
            for y in range(H):
                for x in range(W):
                    total += X[n, y, x, c]
            out[n, c] = total / (H * W)
    return out


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


# --------------------------------------------------------------------------- set-up helpers


def in_network(
    layers: list[Layer],
    input_shape: tuple[int, ...],
    seed: int = 0,
    n_outputs: int = 3,
    dtype: type = np.float64,
) -> Network:
    """The layers (ending flat) in a small softmax network, built the way the CLI builds one;
    biases and batchnorm's gamma / beta randomised so that none of them is a plain 0 or 1."""
    net = Network.from_layers(
        layers,
        input_shape,
        n_outputs,
        output="softmax",
        rng=np.random.default_rng(seed),
        init="he",
        dtype=dtype,
        dropout_rng=np.random.default_rng(seed + 100),
    )
    rng = np.random.default_rng(seed + 200)
    for layer in net.layers:
        for name, p in layer.params.items():
            if name in ("b", "beta"):
                p[...] = rng.normal(0.0, 0.3, p.shape)
            elif name == "gamma":
                p[...] = rng.uniform(0.5, 1.5, p.shape)
    return net


def tail_for(shape: tuple[int, ...]) -> list[Layer]:
    return [Flatten()] if len(shape) > 1 else []


def built(layer: Layer, input_shape: tuple[int, ...], seed: int = 0) -> tuple[Layer, Network]:
    """``layer`` built and bound inside a network on samples of ``input_shape``."""
    net = in_network([layer, *tail_for(layer_output(layer, input_shape))], input_shape, seed)
    return layer, net


def layer_output(layer: Layer, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    return layer.output_shape_for(tuple(input_shape))


def check_layer_gradients(
    layer: Layer,
    X: np.ndarray,
    training: bool,
    seed: int = 1,
    before_forward: Any = None,
) -> None:
    """J = sum(A * R), R random: backward's dA_prev and parameter gradients equal central
    differences of J with respect to the input and to every parameter."""
    reset = before_forward or (lambda: None)
    reset()
    A = layer.forward(X, training)
    R = np.random.default_rng(seed).normal(size=A.shape)

    def J() -> float:
        reset()
        return float(np.sum(layer.forward(X, training) * R))

    reset()
    layer.forward(X, training)
    dX = layer.backward(R.copy())
    analytic = {name: g.copy() for name, g in layer.grads.items()}
    assert dX.shape == X.shape
    np.testing.assert_allclose(dX, numeric_grad(J, X), **GRAD_TOL, err_msg="dA_prev")
    for name, P in layer.params.items():
        np.testing.assert_allclose(analytic[name], numeric_grad(J, P), **GRAD_TOL, err_msg=name)


def distinct_values_with_pair_ties(
    shape: tuple[int, ...], size: int, stride: int, seed: int
) -> np.ndarray:
    """Integer-valued images where many windows have exactly two equal maxima and none more:
    distinct values, then in some windows the second largest is set equal to the largest,
    never reusing a value (so any value occurs at most twice)."""
    rng = np.random.default_rng(seed)
    X = rng.permutation(math.prod(shape)).reshape(shape).astype(np.float64)
    m, H, W, C = shape
    touched = np.zeros(shape, dtype=bool)
    for n in range(m):
        for _, _, entries in pool_windows(H, W, size, stride):
            for c in range(C):
                if rng.random() < 0.5:
                    continue
                order = sorted(entries, key=lambda e: X[n, e[0], e[1], c], reverse=True)
                (r1, q1), (r2, q2) = order[0], order[1]
                if touched[n, r1, q1, c] or touched[n, r2, q2, c]:
                    continue
                X[n, r2, q2, c] = X[n, r1, q1, c]
                touched[n, r1, q1, c] = touched[n, r2, q2, c] = True
    # into [0, 1) by a power of two (exact: the ties stay ties), so the cost is O(1) and the
    # central differences keep their precision; the gaps between values stay >> h
    return X / 2.0 ** math.ceil(math.log2(X.size))


def tie_counts(X: np.ndarray, size: int, stride: int) -> list[int]:
    """How many entries equal the maximum, for every window."""
    m, H, W, C = X.shape
    counts = []
    for n in range(m):
        for _, _, entries in pool_windows(H, W, size, stride):
            for c in range(C):
                values = [X[n, r, q, c] for r, q in entries]
                counts.append(values.count(max(values)))
    return counts


# --------------------------------------------------------------------------- 1. forward


KERNELS = [(1, 1), (3, 3), (2, 3), (5, 5)]
STRIDES = [1, 2, 3]


def conv_cases() -> list[Any]:
    """ "same" on a 5x7 input for every kernel and stride; "valid" on 5x7 where the windows
    tile it, and on an input sized (kh + 2s) x (kw + 3s) for every kernel and stride."""
    cases = []
    for k in KERNELS:
        for s in STRIDES:
            cases.append(pytest.param(k, s, "same", (5, 7), id=f"same-{k[0]}x{k[1]}-s{s}-5x7"))
            if (5 - k[0]) % s == 0 and (7 - k[1]) % s == 0:
                cases.append(
                    pytest.param(k, s, "valid", (5, 7), id=f"valid-{k[0]}x{k[1]}-s{s}-5x7")
                )
            hw = (k[0] + 2 * s, k[1] + 3 * s)
            cases.append(
                pytest.param(k, s, "valid", hw, id=f"valid-{k[0]}x{k[1]}-s{s}-{hw[0]}x{hw[1]}")
            )
    return cases


@pytest.mark.parametrize(("kernel", "stride", "padding", "hw"), conv_cases())
def test_conv2d_forward_equals_the_naive_loops(
    kernel: tuple[int, int], stride: int, padding: str, hw: tuple[int, int]
) -> None:
    H, W = hw
    conv = Conv2D(4, kernel=kernel, stride=stride, padding=padding)
    _, net = built(conv, (H, W, 3))
    X = np.random.default_rng(7).normal(size=(2, H, W, 3))
    A = conv.forward(X)
    expected = naive_conv2d(X, conv.params["W"], conv.params["b"], stride, padding)
    if padding == "same":
        assert A.shape == (2, math.ceil(H / stride), math.ceil(W / stride), 4)
    assert conv.params["W"].shape == (*kernel, 3, 4)
    assert A.shape == expected.shape
    np.testing.assert_allclose(A, expected, **FORWARD_TOL)


@pytest.mark.parametrize(
    ("kernel", "stride", "hw", "pads"),
    [
        ((2, 3), 1, (5, 7), ((0, 1), (1, 1))),
        ((3, 3), 2, (6, 8), ((0, 1), (0, 1))),
        ((5, 5), 3, (5, 7), ((1, 2), (2, 2))),
        ((1, 1), 2, (6, 8), ((0, 0), (0, 0))),
        ((2, 2), 3, (6, 6), ((0, 0), (0, 0))),
    ],
    ids=["2x3-s1-odd", "3x3-s2-even-input", "5x5-s3", "1x1-s2-even-input", "2x2-s3"],
)
def test_same_padding_puts_the_smaller_half_on_top_and_left(
    kernel: tuple[int, int], stride: int, hw: tuple[int, int], pads: tuple
) -> None:
    """TensorFlow's rule: output ceil(H / s); total padding max((Ho - 1) s + kh - H, 0), its
    smaller half before. A kernel of distinct weights shows which pixels each output sees."""
    H, W = hw
    assert (same_pads(H, kernel[0], stride)[1:], same_pads(W, kernel[1], stride)[1:]) == pads
    conv = Conv2D(1, kernel=kernel, stride=stride, padding="same")
    _, net = built(conv, (H, W, 1))
    conv.params["W"][...] = np.arange(1.0, 1 + math.prod(kernel)).reshape(*kernel, 1, 1)
    conv.params["b"][...] = 0.0
    X = np.random.default_rng(3).normal(size=(1, H, W, 1))
    A = conv.forward(X)
    assert A.shape == (1, math.ceil(H / stride), math.ceil(W / stride), 1)
    np.testing.assert_allclose(
        A, naive_conv2d(X, conv.params["W"], conv.params["b"], stride, "same"), **FORWARD_TOL
    )


POOL_CASES = [
    pytest.param(2, 2, (6, 8), id="size2-stride2"),
    pytest.param(2, 1, (5, 7), id="size2-stride1-overlapping"),
    pytest.param(3, 3, (6, 9), id="size3-stride3"),
    pytest.param(3, 2, (7, 9), id="size3-stride2-overlapping"),
    pytest.param(3, 1, (5, 7), id="size3-stride1-overlapping"),
]


@pytest.mark.parametrize(("size", "stride", "hw"), POOL_CASES)
@pytest.mark.parametrize("how", ["max", "avg"])
def test_pooling_forward_equals_the_naive_loops(
    how: str, size: int, stride: int, hw: tuple[int, int]
) -> None:
    H, W = hw
    cls = MaxPool2D if how == "max" else AvgPool2D
    pool, _ = built(cls(size, stride=stride), (H, W, 3))
    X = np.random.default_rng(5).normal(size=(2, H, W, 3))
    A = pool.forward(X)
    expected = naive_pool(X, size, stride, how)
    assert A.shape == (2, (H - size) // stride + 1, (W - size) // stride + 1, 3)
    np.testing.assert_allclose(A, expected, **FORWARD_TOL)


def test_maxpool_of_size_1_is_the_identity_both_ways() -> None:
    pool, _ = built(MaxPool2D(1), (3, 4, 2))
    X = np.random.default_rng(6).normal(size=(2, 3, 4, 2))
    np.testing.assert_array_equal(pool.forward(X), X)
    dA = np.random.default_rng(7).normal(size=X.shape)
    np.testing.assert_array_equal(pool.backward(dA.copy()), dA)


def test_pool_stride_defaults_to_the_size() -> None:
    pool, _ = built(MaxPool2D(3), (6, 9, 2))
    assert pool.output_shape == (2, 3, 2)
    X = np.random.default_rng(0).normal(size=(2, 6, 9, 2))
    np.testing.assert_array_equal(pool.forward(X), naive_pool(X, 3, 3, "max"))


def test_global_avgpool_forward_equals_the_naive_loops() -> None:
    pool, _ = built(GlobalAvgPool(), (5, 7, 3))
    X = np.random.default_rng(2).normal(size=(4, 5, 7, 3))
    A = pool.forward(X)
    assert A.shape == (4, 3)
    np.testing.assert_allclose(A, naive_global_avgpool(X), **FORWARD_TOL)


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


# --------------------------------------------------------------------------- 2. gradients


GRAD_CONV_CASES = [
    pytest.param((3, 3), 1, "same", (5, 7), id="3x3-s1-same"),
    pytest.param((3, 3), 1, "valid", (5, 7), id="3x3-s1-valid"),
    pytest.param((3, 3), 2, "same", (5, 7), id="3x3-s2-same"),
    pytest.param((3, 3), 2, "valid", (5, 7), id="3x3-s2-valid"),
    pytest.param((2, 3), 2, "same", (6, 8), id="2x3-s2-same-odd-padding"),
    pytest.param((2, 3), 3, "valid", (8, 9), id="2x3-s3-valid"),
    pytest.param((5, 5), 3, "same", (5, 7), id="5x5-s3-same"),
    pytest.param((1, 1), 2, "valid", (5, 7), id="1x1-s2-valid"),
]


@pytest.mark.parametrize(("kernel", "stride", "padding", "hw"), GRAD_CONV_CASES)
def test_conv2d_gradients_match_central_differences(
    kernel: tuple[int, int], stride: int, padding: str, hw: tuple[int, int]
) -> None:
    conv, _ = built(Conv2D(4, kernel=kernel, stride=stride, padding=padding), (*hw, 3))
    X = np.random.default_rng(11).normal(size=(2, *hw, 3))
    check_layer_gradients(conv, X, training=True)


@pytest.mark.parametrize(("kernel", "stride", "padding", "hw"), GRAD_CONV_CASES)
def test_conv2d_on_one_channel_matches_the_naive_loops_and_central_differences(
    kernel: tuple[int, int], stride: int, padding: str, hw: tuple[int, int]
) -> None:
    """One input channel takes im2col's copy-per-kernel-offset path (more channels: one copy
    of the sliding-window view); both give the naive numbers and the right gradients."""
    conv, _ = built(Conv2D(4, kernel=kernel, stride=stride, padding=padding), (*hw, 1))
    X = np.random.default_rng(23).normal(size=(2, *hw, 1))
    np.testing.assert_allclose(
        conv.forward(X),
        naive_conv2d(X, conv.params["W"], conv.params["b"], stride, padding),
        **FORWARD_TOL,
    )
    check_layer_gradients(conv, X, training=True)


@pytest.mark.parametrize(("size", "stride", "hw"), POOL_CASES)
@pytest.mark.parametrize("cls", [MaxPool2D, AvgPool2D], ids=["max", "avg"])
def test_pooling_input_gradient_matches_central_differences(
    cls: type, size: int, stride: int, hw: tuple[int, int]
) -> None:
    """Random real inputs: no ties (max-pool has a derivative everywhere they are)."""
    pool, _ = built(cls(size, stride=stride), (*hw, 2))
    X = np.random.default_rng(12).normal(size=(2, *hw, 2))
    if cls is MaxPool2D:
        assert max(tie_counts(X, size, stride)) == 1
    check_layer_gradients(pool, X, training=True)


def test_global_avgpool_input_gradient_matches_central_differences() -> None:
    pool, _ = built(GlobalAvgPool(), (5, 7, 3))
    check_layer_gradients(pool, np.random.default_rng(13).normal(size=(2, 5, 7, 3)), True)


def test_flatten_input_gradient_matches_central_differences() -> None:
    flat = in_network([Flatten()], (3, 5, 2)).layers[0]
    assert flat.output_shape == (30,)
    check_layer_gradients(flat, np.random.default_rng(14).normal(size=(2, 3, 5, 2)), True)


def test_maxpool_splits_the_gradient_evenly_among_tied_maxima() -> None:
    """The expected numbers, by hand: a window with two equal maxima gives dA / 2 to each, one
    with all four equal dA / 4 to each, a window with one maximum all of dA to it."""
    pool, _ = built(MaxPool2D(2), (2, 6, 1))
    X = np.array([[1.0, 3.0, 2.0, 2.0, 5.0, 5.0], [3.0, 0.0, 0.0, 1.0, 5.0, 5.0]])
    A = pool.forward(X.reshape(1, 2, 6, 1))
    np.testing.assert_array_equal(A.reshape(3), [3.0, 2.0, 5.0])
    dX = pool.backward(np.array([4.0, 6.0, 8.0]).reshape(1, 1, 3, 1))
    expected = np.array([[0.0, 2.0, 3.0, 3.0, 2.0, 2.0], [2.0, 0.0, 0.0, 0.0, 2.0, 2.0]])
    np.testing.assert_array_equal(dX.reshape(2, 6), expected)

    pool, _ = built(MaxPool2D(2), (2, 2, 1))
    pool.forward(np.array([7.0, 1.0, 2.0, 3.0]).reshape(1, 2, 2, 1))
    dX = pool.backward(np.array([5.0]).reshape(1, 1, 1, 1))
    np.testing.assert_array_equal(dX.reshape(4), [5.0, 0.0, 0.0, 0.0])


@pytest.mark.parametrize(("size", "stride", "hw"), POOL_CASES)
def test_maxpool_ties_on_integer_inputs_split_evenly(
    size: int, stride: int, hw: tuple[int, int]
) -> None:
    """Integer inputs 0..3: many ties of 2, 3 or more entries, windows overlapping or not;
    the input gradient is the naive split-evenly one."""
    pool, _ = built(MaxPool2D(size, stride=stride), (*hw, 2))
    rng = np.random.default_rng(15)
    X = rng.integers(0, 4, size=(3, *hw, 2)).astype(np.float64)
    assert max(tie_counts(X, size, stride)) >= 3
    A = pool.forward(X)
    np.testing.assert_array_equal(A, naive_pool(X, size, stride, "max"))
    dA = rng.normal(size=A.shape)
    dX = pool.backward(dA.copy())
    np.testing.assert_allclose(dX, naive_maxpool_backward(X, dA, size, stride), **FORWARD_TOL)


@pytest.mark.parametrize(("size", "stride", "hw"), POOL_CASES)
def test_maxpool_with_two_way_ties_matches_central_differences(
    size: int, stride: int, hw: tuple[int, int]
) -> None:
    """At a tie of exactly two maxima the central difference of max is 1/2 for each: the
    backward pass must give the same (and the naive split-evenly numbers)."""
    pool, _ = built(MaxPool2D(size, stride=stride), (*hw, 2))
    X = distinct_values_with_pair_ties((2, *hw, 2), size, stride, seed=16)
    counts = tie_counts(X, size, stride)
    assert max(counts) == 2 and counts.count(2) >= len(counts) // 5, counts
    check_layer_gradients(pool, X, training=True)
    A = pool.forward(X)
    dA = np.random.default_rng(17).normal(size=A.shape)
    np.testing.assert_allclose(
        pool.backward(dA.copy()), naive_maxpool_backward(X, dA, size, stride), **FORWARD_TOL
    )


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


def test_dropout_gradient_with_a_fixed_mask_matches_central_differences() -> None:
    net = in_network([Dropout(0.4), Flatten()], (3, 5, 2))
    drop = net.layers[0]
    X = np.random.default_rng(20).normal(size=(4, 3, 5, 2))

    def reset() -> None:
        net.rng = np.random.default_rng(21)

    reset()
    A = drop.forward(X, training=True)
    dropped = A == 0
    assert 0.2 < dropped.mean() < 0.6  # a real mask: about 40 % of the entries are zeroed
    np.testing.assert_allclose(A[~dropped], X[~dropped] / 0.6, **FORWARD_TOL)
    check_layer_gradients(drop, X, training=True, before_forward=reset)
    np.testing.assert_array_equal(drop.forward(X, training=False), X)  # evaluation: identity


def relu_inputs(net: Network, X: np.ndarray, training: bool) -> list[np.ndarray]:
    """What each ReLU layer of ``net`` receives for ``X`` (to keep the check off the kinks)."""
    seen, A = [], np.asarray(X, dtype=net.dtype)
    for layer in net.layers:
        if isinstance(layer, ReLU):
            seen.append(A.copy())
        A = layer.forward(A, training)
    return seen


def check_network_gradients(net: Network, X: np.ndarray, y: np.ndarray, seed: int) -> None:
    """Every parameter of a softmax network against central differences of its cost, in
    training mode, dropout masks repeated by resetting the network's generator."""
    Y = net.loss.targets(y, 3, np.float64)

    def reset() -> None:
        net.rng = np.random.default_rng(seed)

    reset()
    for A in relu_inputs(net, X, training=True):
        assert np.abs(A).min() > 1e-4  # well away from ReLU's kink at 0

    def J() -> float:
        reset()
        return net.loss.cost(net.forward(X, training=True), Y)

    reset()
    Z = net.forward(X, training=True)
    net.backward(net.loss.dZ(Z, Y))
    analytic = [g.copy() for g in net.grads()]
    assert len(analytic) == len(net.params())
    for layer in net.layers:
        for name, P in layer.params.items():
            i = next(k for k, p in enumerate(net.params()) if p is P)
            np.testing.assert_allclose(
                analytic[i], numeric_grad(J, P), **GRAD_TOL, err_msg=f"{layer.describe()} {name}"
            )


def test_cnn_network_gradients_match_central_differences() -> None:
    """conv (same, non-square kernel) -> batchnorm -> relu -> overlapping max-pool -> avg-pool
    -> dropout -> flatten -> softmax; every parameter checked."""
    layers = [
        Conv2D(3, kernel=(2, 3), padding="same"),
        BatchNorm(),
        ReLU(),
        MaxPool2D(2, stride=1),
        AvgPool2D(2),
        Dropout(0.3),
        Flatten(),
    ]
    net = in_network(layers, (5, 7, 2), seed=30)
    assert net.layers[4].output_shape == (2, 3, 3)
    X = np.random.default_rng(31).normal(size=(4, 5, 7, 2))
    check_network_gradients(net, X, np.array([0, 1, 2, 1]), seed=32)


def test_strided_cnn_network_gradients_match_central_differences() -> None:
    """conv (stride 2, same, odd padding) -> tanh -> conv 1x1 -> global average -> batchnorm on
    dense input -> softmax."""
    layers = [
        Conv2D(4, kernel=3, stride=2, padding="same"),
        Tanh(),
        Conv2D(3, kernel=1),
        GlobalAvgPool(),
        BatchNorm(),
    ]
    net = in_network(layers, (6, 7, 3), seed=40)
    assert net.layers[0].output_shape == (3, 4, 4)
    X = np.random.default_rng(41).normal(size=(5, 6, 7, 3))
    check_network_gradients(net, X, np.array([0, 1, 2, 2, 0]), seed=42)


# --------------------------------------------------------------------------- 3. running stats


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


# --------------------------------------------------------------------------- 4. validation


def one_line_value_error(layers: list[Layer], input_shape: tuple[int, ...], match: str) -> str:
    with pytest.raises(ValueError, match=match) as info:
        Network.from_layers(layers, input_shape, 3, "softmax", rng=np.random.default_rng(0))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_kernel_larger_than_its_input_is_refused() -> None:
    one_line_value_error(
        [Conv2D(2, kernel=5), Flatten()],
        (4, 6, 1),
        r"^conv2d: the height of the window \(5\) is larger than its input \(4\)",
    )
    one_line_value_error(
        [Conv2D(2, kernel=(3, 7)), Flatten()],
        (4, 6, 1),
        r"^conv2d: the width of the window \(7\) is larger than its input \(6\)",
    )
    one_line_value_error(
        [MaxPool2D(3), Flatten()],
        (2, 6, 1),
        r"^maxpool2d: the height of the window \(3\) is larger than its input \(2\)",
    )


def test_a_dense_layer_on_images_needs_a_flatten() -> None:
    one_line_value_error(
        [Conv2D(2, kernel=3), Dense(4)],
        (5, 5, 1),
        r"^dense: needs flat input \(one row per sample\), got samples of shape \(3, 3, 2\); "
        "put a flatten layer before it$",
    )


def test_conv_and_pooling_need_images() -> None:
    for layer in (Conv2D(2), MaxPool2D(2), AvgPool2D(2), GlobalAvgPool()):
        one_line_value_error(
            [layer],
            (64,),
            rf"^{layer.kind}: needs images \(height, width, channels\), got samples of shape "
            r"\(64,\)",
        )


@pytest.mark.parametrize("cls", [MaxPool2D, AvgPool2D], ids=["max", "avg"])
def test_pooling_windows_must_tile_the_input(cls: type) -> None:
    one_line_value_error(
        [cls(2), Flatten()],
        (7, 7, 1),
        rf"^{cls.kind}: windows of 2 at stride 2 do not tile an input height of 7 "
        r"\(7 - 2 is not a multiple of 2\)",
    )
    one_line_value_error(
        [cls(3, stride=2), Flatten()],
        (7, 8, 1),
        rf"^{cls.kind}: windows of 3 at stride 2 do not tile an input width of 8",
    )


def test_a_non_flat_last_layer_is_refused_by_the_network() -> None:
    one_line_value_error(
        [Conv2D(2, kernel=3)], (5, 5, 1), r"^dense: needs flat input .* shape \(3, 3, 2\)"
    )


def digits_spec(layers: list[Any], **train: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "cnn",
        "data": {"dataset": "digits"},
        "model": {"layers": layers},
    }
    if train:
        spec["train"] = train
    return spec


@pytest.fixture(scope="module")
def digits() -> Any:
    config = build_config(digits_spec(["global_avgpool"]), "spec.yaml")
    return load_dataset(config.data, config.seed, config.model.dtype)


NOT_FLAT = [{"type": "conv2d", "filters": 4, "kernel": 3}, "relu"]


def test_a_non_flat_last_layer_is_a_config_error(digits: Any) -> None:
    """The same line whether the network is built or only sized (one path: network_for)."""
    config = build_config(digits_spec(NOT_FLAT), "spec.yaml")
    for refuse in (build.build_network, build.check_memory):
        with pytest.raises(
            ConfigError,
            match=r"^model\.layers: the last layer gives \(6, 6, 4\) per sample; the output "
            "layer needs flat input: end with flatten or global_avgpool$",
        ):
            refuse(config, digits)


def test_image_layer_errors_through_the_experiment(digits: Any) -> None:
    big = build_config(digits_spec([{"type": "conv2d", "filters": 2, "kernel": 9}, "flatten"]), "s")
    with pytest.raises(
        ConfigError, match=r"^model\.layers: conv2d: the height of the window \(9\) is larger"
    ):
        build.check_memory(big, digits)
    untiled = build_config(digits_spec([{"type": "maxpool2d", "size": 3}, "flatten"]), "s")
    with pytest.raises(ConfigError, match=r"^model\.layers: maxpool2d: windows of 3 at stride 3"):
        build.build_network(untiled, digits)
    tabular = build_config(
        {"data": {"dataset": "blobs400"}, "model": {"layers": ["global_avgpool"]}}, "s"
    )
    blobs = load_dataset(tabular.data, tabular.seed, tabular.model.dtype)
    with pytest.raises(
        ConfigError, match=r"^model\.layers: global_avgpool needs images, but blobs400 is tabular"
    ):
        build.build_network(tabular, blobs)


def no_run_folders(runs_dir: Path) -> bool:
    return not runs_dir.exists() or not any(p.is_dir() for p in runs_dir.iterdir())


def test_cli_refuses_a_non_flat_last_layer(tmp_path: Path) -> None:
    path = tmp_path / "cnn.yaml"
    path.write_text(yaml.safe_dump(digits_spec(NOT_FLAT, max_epochs=1)), encoding="utf-8")
    line = assert_one_line_error(invoke("train", path, "--runs-dir", tmp_path / "runs"))
    assert "the output layer needs flat input: end with flatten or global_avgpool" in line
    assert no_run_folders(tmp_path / "runs")


def test_batchnorm_with_batches_of_one_is_refused(tmp_path: Path, digits: Any) -> None:
    layers = [{"type": "conv2d", "filters": 2, "kernel": 3}, {"type": "batchnorm"}, "flatten"]
    config = build_config(digits_spec(layers, batch_size=1), "spec.yaml")
    with pytest.raises(ConfigError, match=r"batchnorm needs mini-batches \(train\.batch_size >= 2"):
        build.check_compatible(config, digits)
    build.check_compatible(build_config(digits_spec(layers, batch_size=2), "s"), digits)

    path = tmp_path / "bn.yaml"
    path.write_text(yaml.safe_dump(digits_spec(layers, batch_size=1)), encoding="utf-8")
    line = assert_one_line_error(invoke("train", path, "--runs-dir", tmp_path / "runs"))
    assert "batchnorm needs mini-batches" in line
    assert no_run_folders(tmp_path / "runs")


# --------------------------------------------------------------------------- 5. end to end

E2E_SET = ["--set", "train.max_epochs=3", "--set", "train.checkpoint_every=1"]
DIGITS_CNN_ARRAYS = [
    "W0",
    "b0",
    "gamma1",
    "beta1",
    "running_mean1",
    "running_var1",
    "W2",
    "b2",
    "W3",
    "b3",
]


def the_run(runs_dir: Path) -> Path:
    folders = [p for p in runs_dir.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def model_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    with np.load(run_dir / "model.npz", allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs_dir = tmp_path_factory.mktemp("whole")
    result = invoke("train", DIGITS_CNN, *E2E_SET, "--runs-dir", runs_dir)
    assert result.exit_code == 0, result.output
    return the_run(runs_dir)


def test_digits_cnn_trains_and_saves_its_running_statistics(whole_run: Path) -> None:
    info = read_json(whole_run / "run.json")
    assert info["status"] == "completed"
    assert info["stop"]["epochs"] == 3
    arrays = model_arrays(whole_run)
    assert sorted(arrays) == sorted(DIGITS_CNN_ARRAYS)
    assert arrays["W0"].shape == (3, 3, 1, 16) and arrays["W2"].shape == (3, 3, 16, 32)
    assert arrays["running_mean1"].shape == arrays["running_var1"].shape == (16,)
    assert not np.allclose(arrays["running_mean1"], 0.0)
    assert not np.allclose(arrays["running_var1"], 1.0)
    metrics = read_json(whole_run / "metrics.json")
    assert metrics["test"]["n"] == 359
    assert metrics["test"]["accuracy"] > 0.5  # ten classes: chance is 0.1


def test_evaluate_gives_the_test_accuracy_of_metrics_json(whole_run: Path) -> None:
    result = invoke("evaluate", whole_run)
    assert result.exit_code == 0, result.output
    accuracy = read_json(whole_run / "metrics.json")["test"]["accuracy"]
    evaluation = read_json(whole_run / "evaluation-test.json")
    assert evaluation["accuracy"] == accuracy
    assert evaluation["held_out"] is True
    assert f"test accuracy: {accuracy:.4f}" in result.output


def test_an_interrupted_and_resumed_cnn_run_equals_an_uninterrupted_one(
    whole_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C (KeyboardInterrupt) from the epoch hook at epoch 2, then --resume: model.npz,
    every array of it, batchnorm's running statistics included, equals the whole run's."""
    real_train = experiment.train

    def train(*args: Any, hooks: Any, **kwargs: Any) -> Any:
        on_epoch = hooks.on_epoch

        def stop_at_2(record: Any) -> None:
            on_epoch(record)
            if record.epoch == 2:
                raise KeyboardInterrupt

        hooks.on_epoch = stop_at_2
        return real_train(*args, hooks=hooks, **kwargs)

    runs_dir = tmp_path / "runs"
    with monkeypatch.context() as patch:
        patch.setattr(experiment, "train", train)
        stopped = invoke("train", DIGITS_CNN, *E2E_SET, "--runs-dir", runs_dir)
    assert stopped.exit_code == 130, stopped.output
    run_dir = the_run(runs_dir)
    assert read_json(run_dir / "run.json")["status"] == "interrupted"
    halfway = model_arrays(run_dir)
    assert sorted(halfway) == sorted(DIGITS_CNN_ARRAYS)
    assert not np.array_equal(halfway["running_mean1"], model_arrays(whole_run)["running_mean1"])

    resumed = invoke("train", "--resume", run_dir)
    assert resumed.exit_code == 0, resumed.output
    info = read_json(run_dir / "run.json")
    assert info["status"] == "completed"
    assert [r["from_epoch"] for r in info["resumed"]] == [1]
    got, want = model_arrays(run_dir), model_arrays(whole_run)
    assert sorted(got) == sorted(want) == sorted(DIGITS_CNN_ARRAYS)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert read_json(run_dir / "metrics.json") == read_json(whole_run / "metrics.json")


# --------------------------------------------------------------------------- 6. float32


def test_a_float32_cnn_stays_float32_forward_and_backward() -> None:
    layers = [
        Conv2D(3, kernel=3, stride=2, padding="same"),
        BatchNorm(),
        ReLU(),
        MaxPool2D(2, stride=1),
        Conv2D(4, kernel=(2, 3)),
        Tanh(),
        Dropout(0.2),
        AvgPool2D(1),
        GlobalAvgPool(),
    ]
    net = in_network(layers, (7, 9, 2), seed=70, dtype=np.float32)
    assert net.dtype == np.float32
    X = np.random.default_rng(71).normal(size=(5, 7, 9, 2)).astype(np.float32)
    Y = net.loss.targets(np.array([0, 1, 2, 0, 1]), 3, np.float32)

    A = X
    for layer in net.layers:
        A = layer.forward(A, training=True)
        assert A.dtype == np.float32, layer.describe()
    assert A.shape == (5, 3)
    dA = net.loss.dZ(A, Y)
    assert dA.dtype == np.float32
    for layer in reversed(net.layers):
        dA = layer.backward(dA)
        assert dA.dtype == np.float32, layer.describe()
    assert dA.shape == X.shape
    grads = net.grads()
    assert len(grads) == 8  # conv W b, gamma beta, conv W b, dense W b
    for g in grads:
        assert g.dtype == np.float32
    assert all(np.isfinite(g).all() and np.any(g != 0) for g in grads)
    for array in net.state().values():
        assert array.dtype == np.float32

    # the network's own passes (float64 input is cast), training and evaluation
    Z = net.forward(X.astype(np.float64), training=True)
    assert Z.dtype == np.float32
    net.backward(net.loss.dZ(Z, Y))
    assert all(g.dtype == np.float32 for g in net.grads())
    assert net.forward(X, training=False).dtype == np.float32
    assert net.predict_proba(X).dtype == np.float32


def test_the_channel_helpers_sum_columns_and_repeat_channel_vectors() -> None:
    """column_sum (ones @ X) is X.sum(axis=0); in float32 it stays float32 and within float32
    rounding of the exact sum; per_channel(v, rows) puts v[c] at every position's channel c."""
    rng = np.random.default_rng(80)
    X = rng.normal(1.0, 2.0, size=(1000, 5))
    np.testing.assert_allclose(column_sum(X), X.sum(axis=0), rtol=1e-12)
    X32 = X.astype(np.float32)
    got = column_sum(X32)
    assert got.dtype == np.float32
    exact = X32.astype(np.float64).sum(axis=0)
    assert np.all(np.abs(got - exact) <= 1000 * 2.0**-24 * np.abs(X32).sum(axis=0))
    np.testing.assert_array_equal(column_sum(np.zeros((0, 3))), np.zeros(3))

    images = rng.normal(size=(2, 3, 4, 5))
    rows = images.reshape(2, -1)
    v = np.arange(5.0)
    np.testing.assert_array_equal((rows - per_channel(v, rows)).reshape(images.shape), images - v)


def test_float32_stays_float32_through_the_fast_paths() -> None:
    """One-channel conv (per-offset im2col), batchnorm on image rows and max-pool windows side
    by side (stride = size, the (m, Ho, k, Wo, k, C) view), forward and backward."""
    layers = [Conv2D(4, kernel=3, padding="same"), BatchNorm(), ReLU(), MaxPool2D(2), Flatten()]
    net = in_network(layers, (6, 8, 1), seed=90, dtype=np.float32)
    X = np.random.default_rng(91).normal(size=(3, 6, 8, 1)).astype(np.float32)
    A = X
    for layer in net.layers:
        A = layer.forward(A, training=True)
        assert A.dtype == np.float32, layer.describe()
    dA = np.random.default_rng(92).normal(size=A.shape).astype(np.float32)
    for layer in reversed(net.layers):
        dA = layer.backward(dA, need_dA_prev=True)
        assert dA.dtype == np.float32, layer.describe()
    assert dA.shape == X.shape
    assert all(g.dtype == np.float32 for g in net.grads())


def test_maxpool_ties_in_windows_of_more_than_255_entries_split_evenly() -> None:
    """Windows of 16 x 16 count their ties past a byte (uint16); float32 stays float32."""
    pool, _ = built(MaxPool2D(16), (32, 32, 2))
    rng = np.random.default_rng(93)
    X = rng.integers(0, 2, size=(2, 32, 32, 2)).astype(np.float64)  # ~128 maxima per window
    X[0, :16, :16, 0] = 1.0  # one window of 256 equal maxima (a byte would count 0)
    assert max(tie_counts(X, 16, 16)) == 256
    A = pool.forward(X)
    dA = rng.normal(size=A.shape)
    np.testing.assert_allclose(
        pool.backward(dA.copy()), naive_maxpool_backward(X, dA, 16, 16), **FORWARD_TOL
    )
    pool.forward(X.astype(np.float32))
    assert pool.backward(dA.astype(np.float32)).dtype == np.float32
