"""2-D convolution on channels-last images (m, H, W, C), by im2col and one matrix product.

    Z[n, y, x, f] = b[f] + sum_{i, j, c} A_prev[n, s y + i, s x + j, c] W[i, j, c, f]

With the input padded first ("same": the output keeps H / s, as in Keras / TensorFlow). im2col
copies, for each of the kh x kw kernel offsets (i, j), the strided slice of the input that the
offset sees into ``cols`` (m Ho Wo, kh kw C), so the whole layer is one GEMM cols @ W; backward
is dW = cols^T dZ and, for each kernel offset, dZ W[i, j]^T added back into the slice of the
(padded) input that the offset saw: col2im, one GEMM per offset, with no (m Ho Wo, kh kw C)
buffer for dcols. The Python loops run over kernel offsets (9 for a 3x3 kernel), never over
samples or pixels.

im2col is one copy of NumPy's sliding_window_view when C > 1. With one channel (a grey image)
it is a copy per kernel offset into cols^T (kh kw, m Ho Wo): runs of Wo numbers, contiguous on
both sides, where a copy into cols or of the window view would write runs of 1 number (then
the GEMMs take cols as the transposed view of cols^T). col2im reuses one buffer for the products
of its kernel offsets. The GEMMs, the window copy and col2im, which carry nearly all of a CNN's
time, run a slice of the rows (samples) per thread (nn/threads.py); the rest is plain NumPy.

Why channels last (NHWC): the GEMM's output (m Ho Wo, F) already is the next layer's input
(m, Ho, Wo, F), with no transpose, and each kernel offset's slice copies whole runs of C
contiguous numbers; with NCHW both the output and the columns need a transpose.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from scratchnn_cli.nn.init import init_weights
from scratchnn_cli.nn.layers.base import Layer, Shape
from scratchnn_cli.nn.layers.channels import column_sum, per_channel
from scratchnn_cli.nn.threads import by_samples, in_parallel, matmul


@by_samples
def copy_windows(windows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """cols = the windows (m, Ho, Wo, C, kh, kw) with each window's entries in (i, j, c) order."""
    out[...] = windows.transpose(0, 1, 2, 4, 5, 3)
    return out


def pair(name: str, value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """3 -> (3, 3); [3, 5] -> (3, 5); whole numbers >= 1 only."""
    values = (value, value) if isinstance(value, int | np.integer) else tuple(value)
    if len(values) != 2 or any(
        isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1 for v in values
    ):
        raise ValueError(f"{name} must be a whole number >= 1 or two of them, got {value!r}")
    return int(values[0]), int(values[1])


def image_shape(kind: str, input_shape: Shape) -> tuple[int, int, int]:
    """(H, W, C) of image input, or a ValueError saying the data is not images."""
    if len(input_shape) != 3:
        raise ValueError(
            f"{kind}: needs images (height, width, channels), got samples of shape "
            f"{input_shape}: the data is tabular (use dense layers), or set data.image_shape"
        )
    return input_shape  # type: ignore[return-value]


def window_count(kind: str, size: int, window: int, stride: int, axis: str) -> int:
    """How many windows of ``window`` at ``stride`` tile ``size`` exactly (else ValueError)."""
    if window > size:
        raise ValueError(
            f"{kind}: the {axis} of the window ({window}) is larger than its input ({size})"
        )
    if (size - window) % stride:
        raise ValueError(
            f"{kind}: windows of {window} at stride {stride} do not tile an input {axis} of "
            f"{size} ({size} - {window} is not a multiple of {stride}); change the size, the "
            "stride or the padding"
        )
    return (size - window) // stride + 1


class Conv2D(Layer):
    """``filters`` kernels of kh x kw x C; W (kh, kw, C, F), b (F,)."""

    kind = "conv2d"
    penalized = ("W",)

    def __init__(
        self,
        filters: int,
        kernel: int | tuple[int, int] = 3,
        stride: int = 1,
        padding: str = "valid",
    ) -> None:
        super().__init__()
        self.filters = pair("conv2d: filters", filters)[0]
        self.kernel = pair("conv2d: kernel", kernel)
        self.stride = pair("conv2d: stride", stride)[0]
        if padding not in ("valid", "same"):
            raise ValueError(f"conv2d: padding must be valid or same, got {padding!r}")
        self.padding = padding

    def output_shape_for(self, input_shape: Shape) -> Shape:
        H, W, _ = image_shape(self.kind, input_shape)
        (kh, kw), s = self.kernel, self.stride
        if self.padding == "same":
            Ho, Wo = -(-H // s), -(-W // s)
            ph, pw = max((Ho - 1) * s + kh - H, 0), max((Wo - 1) * s + kw - W, 0)
            self.pads = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2))
            return (Ho, Wo, self.filters)  # the last window may end before the input does
        self.pads = ((0, 0), (0, 0))
        Ho = window_count(self.kind, H, kh, s, "height")
        Wo = window_count(self.kind, W, kw, s, "width")
        return (Ho, Wo, self.filters)

    def param_shapes(self) -> dict[str, Shape]:
        kh, kw = self.kernel
        return {"W": (kh, kw, self.input_shape[2], self.filters), "b": (self.filters,)}

    def bind(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        super().bind(params, grads)
        self.W, self.b, self.dW, self.db = params["W"], params["b"], grads["W"], grads["b"]

    def initialize(self, rng: np.random.Generator, init: str, mu: float, sigma: float) -> None:
        kh, kw, C, F = self.W.shape
        init_weights(self.W, self.b, rng, init, mu, sigma, kh * kw * C, kh * kw * F)

    def cache_per_sample(self) -> int:
        Ho, Wo, _ = self.output_shape
        kh, kw = self.kernel
        return Ho * Wo * kh * kw * self.input_shape[2] + Ho * Wo * self.filters

    def _offsets(self) -> list[tuple[int, int, slice, slice]]:
        """(i, j, rows, columns) of each kernel offset: the strided slice of the padded input
        that kernel entry (i, j) multiplies, for every output position at once."""
        Ho, Wo, _ = self.output_shape
        (kh, kw), s = self.kernel, self.stride
        return [
            (i, j, slice(i, i + s * (Ho - 1) + 1, s), slice(j, j + s * (Wo - 1) + 1, s))
            for i in range(kh)
            for j in range(kw)
        ]

    def im2col(self, X: np.ndarray) -> np.ndarray:
        """cols[(n, y, x), (i, j, c)] = X[n, s y + i, s x + j, c], X the padded input."""
        m, C = X.shape[0], X.shape[3]
        (Ho, Wo, _), (kh, kw), s = self.output_shape, self.kernel, self.stride
        if C == 1:  # one copy per kernel offset into cols^T (see the module docstring)
            cols_T = np.empty((kh, kw, m, Ho, Wo), dtype=X.dtype)
            for i, j, rows, columns in self._offsets():
                cols_T[i, j] = X[:, rows, columns, 0]
            return cols_T.reshape(kh * kw, m * Ho * Wo).T
        windows = sliding_window_view(X, (kh, kw), axis=(1, 2))[:, ::s, ::s][:, :Ho, :Wo]
        cols = copy_windows(windows, out=np.empty((m, Ho, Wo, kh, kw, C), dtype=X.dtype))
        return cols.reshape(m * Ho * Wo, kh * kw * C)

    def forward(self, A_prev: np.ndarray, training: bool = False) -> np.ndarray:
        """Z = im2col(A_prev) W + b."""
        m, (Ho, Wo, F) = A_prev.shape[0], self.output_shape
        X = A_prev
        if self.padding == "same" and any(p for pads in self.pads for p in pads):
            (top, bottom), (left, right) = self.pads
            H, W, C = self.input_shape
            X = np.zeros((m, H + top + bottom, W + left + right, C), dtype=A_prev.dtype)
            X[:, top : top + H, left : left + W, :] = A_prev
        self.cols = self.im2col(X)
        Z = matmul(self.cols, self.W.reshape(-1, F))
        rows = Z.reshape(m, Ho * Wo * F)
        rows += per_channel(self.b, rows)  # b[f] added at every position of every sample
        return Z.reshape(m, Ho, Wo, F)

    def backward(self, dZ: np.ndarray, need_dA_prev: bool = True) -> np.ndarray | None:
        """dW = cols^T dZ, db = sum dZ, dA_prev = col2im(dZ W^T): the slice each kernel offset
        (i, j) saw gets dZ W[i, j]^T."""
        m, Ho, Wo, F = dZ.shape
        dZ2 = dZ.reshape(m * Ho * Wo, F)
        matmul(self.cols.T, dZ2, out=self.dW.reshape(-1, F))
        self.db[...] = column_sum(dZ2)
        if not need_dA_prev:
            return None
        H, W, C = self.input_shape
        (top, bottom), (left, right) = self.pads
        dX = np.zeros((m, H + top + bottom, W + left + right, C), dtype=dZ.dtype)
        offsets, dZ_samples = self._offsets(), dZ2.reshape(m, Ho * Wo, F)

        def col2im(n: slice) -> None:  # the samples n (a slice per thread, nn/threads.py)
            dZ_n = dZ_samples[n].reshape(-1, F)
            seen = np.empty((len(dZ_n), C), dtype=dZ.dtype)  # one buffer for the 9 products
            for i, j, rows, columns in offsets:
                np.matmul(dZ_n, self.W[i, j].T, out=seen)
                dX[n, rows, columns, :] += seen.reshape(-1, Ho, Wo, C)

        in_parallel(m, col2im, dX.size + dZ.size, product=(Ho * Wo, F, C))
        return dX[:, top : top + H, left : left + W, :]

    def describe(self) -> str:
        kh, kw = self.kernel
        extra = f", stride {self.stride}" if self.stride != 1 else ""
        return f"conv2d({self.filters}, {kh}x{kw}{extra}, {self.padding})"
