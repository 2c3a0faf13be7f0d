"""Pooling on channels-last images (m, H, W, C): max and average over size x size windows at a
stride, and the global average over all positions.

The windows must tile the input exactly (no pixel silently dropped). Like the convolution, the
loops run over the size x size window offsets, never over samples or pixels. Max-pool's backward
with stride = size (windows side by side, the usual case) works on the input viewed as
(m, Ho, size, Wo, size, C), with one comparison and one product for the whole batch, the ties
counted on the mask's bytes (measured 1.9-2.1x faster than a mask and an add per window offset,
on the float32 28 x 28 x 32 and 14 x 14 x 64 inputs of configs/fashion_cnn.yaml, batch 128,
1 BLAS thread).
"""

from __future__ import annotations

import numpy as np

from scratchnn_cli.nn.layers.base import Layer, Shape
from scratchnn_cli.nn.layers.conv import image_shape, pair, window_count
from scratchnn_cli.nn.threads import in_parallel


class _Pool2D(Layer):
    def __init__(self, size: int = 2, stride: int | None = None) -> None:
        super().__init__()
        self.size = pair(f"{self.kind}: size", size)[0]
        self.stride = self.size if stride is None else pair(f"{self.kind}: stride", stride)[0]

    def fresh(self) -> _Pool2D:
        return type(self)(self.size, self.stride)

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
        (r0, c0), *rest = self._offsets()
        A = np.empty((len(A_prev), *self.output_shape), dtype=A_prev.dtype)

        def window_max(s: slice) -> None:  # the samples s (a slice per thread, nn/threads.py)
            A[s] = A_prev[s, r0, c0, :]
            for r, c in rest:  # element-wise maxima of strided views: no window copies
                np.maximum(A[s], A_prev[s, r, c, :], out=A[s])

        in_parallel(len(A_prev), window_max, A_prev.size)
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
        # windows that tile the input: a view (m, Ho, k, Wo, k, C), window (y, x) = [:, y, :, x]
        (Ho, Wo, C), k = self.output_shape, self.size
        windows = self.A_prev.reshape(-1, Ho, k, Wo, k, C)
        dX = np.empty(windows.shape, dtype=dA.dtype)

        def route(s: slice) -> None:  # the samples s
            at_max = windows[s] == self.A[s, :, None, :, None, :]
            # the mask's bytes as counts (uint16 past 255 entries): whole-number adds, no casts
            counts = at_max.view(np.uint8) if k * k < 256 else at_max.astype(np.uint16)
            ties = sum(counts[:, :, i, :, j, :] for i in range(k) for j in range(k))
            share = dA[s] / ties
            np.multiply(at_max, share[:, :, None, :, None, :], out=dX[s])

        in_parallel(len(dA), route, windows.size)
        return dX.reshape(self.A_prev.shape)


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
