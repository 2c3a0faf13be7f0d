"""nn/layers/pooling.py: maxpool2d, avgpool2d and global_avgpool against naive loop implementations
written here, their input gradients by central differences, ties in max-pool windows (the
gradient split evenly among tied maxima), and windows that must tile the input.

Shapes are channels last (NHWC): images (m, H, W, C)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import (
    FORWARD_TOL,
    built,
    check_layer_gradients,
    one_line_value_error,
)

from scratchnn_cli.nn.layers import (
    AvgPool2D,
    Flatten,
    GlobalAvgPool,
    MaxPool2D,
)

# --------------------------------------------------------------------------- naive references


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


# --------------------------------------------------------------------------- forward


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


# --------------------------------------------------------------------------- gradients


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


# --------------------------------------------------------------------------- validation


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
