"""The fully connected layer: Z = A_prev @ W + b, and its backward pass."""

from __future__ import annotations

import numpy as np


class Dense:
    """Z = A_prev @ W + b with W (n_in, n_out) and b (n_out,); caches A_prev for backward."""

    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
        self.W = W
        self.b = b
        self.dW = np.zeros_like(W)
        self.db = np.zeros_like(b)
        self.A_prev: np.ndarray | None = None

    def forward(self, A_prev: np.ndarray) -> np.ndarray:
        """Z = A_prev W + b."""
        self.A_prev = A_prev
        Z = A_prev @ self.W
        Z += self.b
        return Z

    def backward(self, dZ: np.ndarray, need_dA: bool = True) -> np.ndarray | None:
        """dW = A_prev^T dZ, db = sum_i dZ_i, and (unless not needed) dA_prev = dZ W^T."""
        if dZ.shape[0] == 1:  # one sample: dW is an outer product, cheaper than a k=1 matmul
            np.multiply(self.A_prev.T, dZ, out=self.dW)
            self.db[...] = dZ[0]
        else:
            np.matmul(self.A_prev.T, dZ, out=self.dW)
            np.sum(dZ, axis=0, out=self.db)
        return dZ @ self.W.T if need_dA else None
