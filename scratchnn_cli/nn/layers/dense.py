"""The fully connected layer: Z = A_prev @ W + b, and its backward pass.

A_prev is (m, n_in), one sample per row; W is (n_in, n_out) and b (n_out,). The products are
``matmul`` (nn/threads.py): A @ B, its rows split over the threads when they are large.
"""

from __future__ import annotations

import numpy as np

from scratchnn_cli.nn.init import init_dense
from scratchnn_cli.nn.layers.base import Layer, Shape
from scratchnn_cli.nn.threads import matmul


class Dense(Layer):
    """Z = A_prev W + b with W (n_in, n_out) and b (n_out,); caches A_prev for backward."""

    kind = "dense"
    penalized = ("W",)

    def __init__(self, units: int) -> None:
        super().__init__()
        if isinstance(units, bool) or not isinstance(units, int | np.integer) or units < 1:
            raise ValueError(f"dense: units must be a whole number >= 1, got {units!r}")
        self.units = int(units)
        self.A_prev: np.ndarray | None = None

    def output_shape_for(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 1:
            raise ValueError(
                f"dense: needs flat input (one row per sample), got samples of shape "
                f"{input_shape}; put a flatten layer before it"
            )
        return (self.units,)

    def param_shapes(self) -> dict[str, Shape]:
        return {"W": (self.input_shape[0], self.units), "b": (self.units,)}

    def bind(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        super().bind(params, grads)
        self.W, self.b = params["W"], params["b"]
        self.dW, self.db = grads["W"], grads["b"]
        self.b_row = self.b[None, :]  # b as a (1, n_out) row, added to every sample's
        self.db_row = self.db[None, :]

    def initialize(self, rng: np.random.Generator, init: str, mu: float, sigma: float) -> None:
        init_dense(self.W, self.b, rng, init, mu, sigma)

    def forward(self, A_prev: np.ndarray, training: bool = False) -> np.ndarray:
        """Z = A_prev W + b."""
        self.A_prev = A_prev
        Z = matmul(A_prev, self.W)
        Z += self.b_row  # b added to every row (sample)
        return Z

    def backward(self, dZ: np.ndarray, need_dA_prev: bool = True) -> np.ndarray | None:
        """dW = A_prev^T dZ, db = sum_i dZ_i, and (unless not needed) dA_prev = dZ W^T."""
        if dZ.shape[0] == 1:  # one sample: dW is an outer product, cheaper than a k=1 matmul
            np.multiply(self.A_prev.T, dZ, out=self.dW)
            self.db_row[...] = dZ
        else:
            matmul(self.A_prev.T, dZ, out=self.dW)
            np.sum(dZ, axis=0, out=self.db)
        return matmul(dZ, self.W.T) if need_dA_prev else None

    def describe(self) -> str:
        return f"dense({self.units})"
