"""Pooling on channels-last images (m, H, W, C): max and average over size x size windows at a
stride, and the global average over all positions.

The windows must tile the input exactly (no pixel silently dropped). Like the convolution, the
loops run over the size x size window offsets, never over samples or pixels. With stride = size
(windows side by side, the usual case) max-pool works on whole input rows: forward takes the
maximum down each window's rows, in runs of W C numbers, then across its columns on 1 / size of
the data; backward compares the input with each window's maximum repeated under its entries and
multiplies the mask by the repeated share, in runs of W C, the ties counted on the mask's bytes
(long runs for NumPy's loops rather than runs of C). Max-pooling, which touches every number of
a large activation, runs a slice of the samples per thread (nn/threads.py).
"""

from __future__ import annotations

import numpy as np

from scratchnn_cli.nn.layers.base import Layer, Shape
from scratchnn_cli.nn.layers.conv import image_shape, pair, window_count
from scratchnn_cli.nn.threads import by_samples


def largest(views: list[np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
    """The element-wise maximum of equally shaped arrays (into ``out`` if given)."""
    if len(views) == 1:  # a 1 x 1 window
        result = np.empty_like(views[0]) if out is None else out
        result[...] = views[0]
        return result
    result = np.maximum(views[0], views[1], out=out)
    for view in views[2:]:
        np.maximum(result, view, out=result)
    return result


def total(views: list[np.ndarray]) -> np.ndarray:
    """The element-wise sum of equally shaped arrays, added in order (``sum`` would add a 0
    first: a pass more)."""
    result = views[0].copy() if len(views) == 1 else views[0] + views[1]
    for view in views[2:]:
        result += view
    return result


@by_samples
def max_of_tiles(X: np.ndarray, out: np.ndarray, *, k: int) -> np.ndarray:
    """The maximum of each k x k window of X (m, k Ho, k Wo, C), windows side by side: down each
    window's k rows (whole input rows: runs of W C numbers), then across its k columns."""
    (m, Ho, Wo, C), W = out.shape, X.shape[2]
    rows = X.reshape(m, Ho, k, W * C)  # rows[n, y, i]: input row k y + i
    down = largest([rows[:, :, i] for i in range(k)]).reshape(m, Ho, Wo, k, C)
    return largest([down[:, :, :, j] for j in range(k)], out=out)


@by_samples
def max_of_windows(
    X: np.ndarray, out: np.ndarray, *, offsets: list[tuple[slice, slice]]
) -> np.ndarray:
    """The maximum of each window of X: element-wise maxima of the strided views that each
    window entry sees (no window copies)."""
    return largest([X[:, r, c, :] for r, c in offsets], out=out)


@by_samples
def to_tile_max(
    X: np.ndarray, A: np.ndarray, dA: np.ndarray, out: np.ndarray, *, k: int
) -> np.ndarray:
    """dX = dA / (number of maxima) at each k x k window's maxima, 0 elsewhere (windows side by
    side; A the maxima): in runs of W C numbers, the ties counted on the mask's bytes."""
    m, Ho, Wo, C = A.shape
    rows = X.reshape(m, Ho, k, Wo * k * C)  # rows[n, y, i] is input row k y + i, whose entry
    # (k x + j) C + c is window (y, x)'s entry (i, j) of channel c

    def wide(V: np.ndarray) -> np.ndarray:  # (m, Ho, Wo, C) -> each window's value
        return np.repeat(V, k, axis=2).reshape(m, Ho, 1, Wo * k * C)  # under each entry

    at_max = rows == wide(A)
    # the mask's bytes as counts (uint16 past 255 entries): whole-number adds, no casts
    counts = at_max.view(np.uint8) if k * k < 256 else at_max.astype(np.uint16)
    down = total([counts[:, :, i] for i in range(k)]).reshape(m, Ho, Wo, k, C)
    ties = total([down[:, :, :, j] for j in range(k)])
    return np.multiply(at_max, wide(dA / ties), out=out.reshape(rows.shape))


class _Pool2D(Layer):
    def __init__(self, size: int = 2, stride: int | None = None) -> None:
        super().__init__()
        self.size = pair(f"{self.kind}: size", size)[0]
        self.stride = self.size if stride is None else pair(f"{self.kind}: stride", stride)[0]

    def output_shape_for(self, input_shape: Shape) -> Shape:
        H, W, C = image_shape(self.kind, input_shape)
        k, s = self.size, self.stride
        return (
            window_count(self.kind, H, k, s, "height"),
            window_count(self.kind, W, k, s, "width"),
            C,
        )

    def _offsets(self) -> list[tuple[slice, slice]]:
        """The strided slice of the input that window entry (i, j) sees, for every window."""
        Ho, Wo, _ = self.output_shape
        k, s = self.size, self.stride
        return [
            (slice(i, i + s * (Ho - 1) + 1, s), slice(j, j + s * (Wo - 1) + 1, s))
            for i in range(k)
            for j in range(k)
        ]

    def describe(self) -> str:
        stride = f", stride {self.stride}" if self.stride != self.size else ""
        return f"{self.kind}({self.size}x{self.size}{stride})"


class MaxPool2D(_Pool2D):
    """A = max over each window. backward: dA goes to the window's largest entry; tied maxima
    share it evenly, which is what central differences give at a tie (d max(x, y) / dx = 1/2
    at x = y), so a gradient check holds there too."""

    kind = "maxpool2d"

    def forward(self, A_prev: np.ndarray, training: bool = False) -> np.ndarray:
        A = np.empty((len(A_prev), *self.output_shape), dtype=A_prev.dtype)
        if self.stride == self.size:  # windows that tile: the max down, then across
            max_of_tiles(A_prev, out=A, k=self.size)
        else:
            max_of_windows(A_prev, out=A, offsets=self._offsets())
        self.A_prev, self.A = A_prev, A
        return A

    def backward(self, dA: np.ndarray, need_dA_prev: bool = True) -> np.ndarray:
        """dA_prev = dA / (number of maxima) at each window's maxima, 0 elsewhere."""
        if self.stride != self.size:  # overlapping windows: add each window entry's share
            offsets = self._offsets()
            at_max = [self.A_prev[:, r, c, :] == self.A for r, c in offsets]
            share = dA / np.sum(at_max, axis=0, dtype=dA.dtype)
            dX = np.zeros((dA.shape[0], *self.input_shape), dtype=dA.dtype)
            for (r, c), here in zip(offsets, at_max, strict=True):
                dX[:, r, c, :] += here * share
            return dX
        dX = np.empty_like(self.A_prev, dtype=dA.dtype)
        return to_tile_max(self.A_prev, self.A, dA, out=dX, k=self.size)


class AvgPool2D(_Pool2D):
    """A = mean over each window; each entry of a window gets dA / size^2."""

    kind = "avgpool2d"

    def forward(self, A_prev: np.ndarray, training: bool = False) -> np.ndarray:
        offsets = self._offsets()
        A = A_prev[:, offsets[0][0], offsets[0][1], :].copy()
        for r, c in offsets[1:]:
            A += A_prev[:, r, c, :]
        A /= A.dtype.type(len(offsets))
        return A

    def backward(self, dA: np.ndarray, need_dA_prev: bool = True) -> np.ndarray:
        dX = np.zeros((dA.shape[0], *self.input_shape), dtype=dA.dtype)
        share = dA / dA.dtype.type(self.size * self.size)
        for r, c in self._offsets():
            dX[:, r, c, :] += share
        return dX


class GlobalAvgPool(Layer):
    """(m, H, W, C) -> (m, C): the mean of each channel over all positions."""

    kind = "global_avgpool"

    def output_shape_for(self, input_shape: Shape) -> Shape:
        return (image_shape(self.kind, input_shape)[2],)

    def forward(self, A_prev: np.ndarray, training: bool = False) -> np.ndarray:
        return A_prev.mean(axis=(1, 2))

    def backward(self, dA: np.ndarray, need_dA_prev: bool = True) -> np.ndarray:
        H, W, C = self.input_shape
        share = dA / dA.dtype.type(H * W)
        return np.broadcast_to(share[:, None, None, :], (dA.shape[0], H, W, C)).copy()
