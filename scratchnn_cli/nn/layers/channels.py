"""Per-channel arithmetic on channels-last arrays (m, ..., C), written so that NumPy runs it fast.

``column_sum(X)``: the sum of each column of a 2-D array, as one matrix product.
``per_channel(v, rows)``: a channel vector v (C,) laid along the rows of ``rows``, the
(m, P C) view of (m, ..., C) (P positions of C channels per sample), so that
``rows - per_channel(mean, rows)`` subtracts each channel's mean from all of its values.

Why: ``X.sum(axis=0)`` on an (N, C) array adds one row of C numbers at a time, and broadcasting
a (C,) vector over (N, C) runs NumPy's inner loop over only C numbers, N times; a matrix product
and rows of P C numbers do the same arithmetic in long runs.
"""

from __future__ import annotations

import numpy as np


def column_sum(X: np.ndarray) -> np.ndarray:
    """sum_i X[i, j] for each column j of a 2-D X: the product ones^T X (one GEMV).

    Equal to ``X.sum(axis=0)`` up to rounding, and in float32 closer to the exact sum (BLAS
    keeps several partial sums where NumPy keeps one running sum per column)."""
    return np.ones(X.shape[0], dtype=X.dtype) @ X


def per_channel(v: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """v (C,) repeated along a row of ``rows`` (m, P C): entry p C + c is v[c]."""
    return np.tile(v, rows.shape[1] // v.shape[0])
