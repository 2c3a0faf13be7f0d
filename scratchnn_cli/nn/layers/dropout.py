"""Inverted dropout: during training A = A_prev * M / (1 - p), M_ij ~ Bernoulli(1 - p)."""

from __future__ import annotations

import numpy as np

from scratchnn_cli.nn.layers.base import Layer


class Dropout(Layer):
    """Zeroes each activation with probability ``rate`` while training and scales the rest by
    1 / (1 - rate), so evaluation needs no rescaling (the layer is then the identity).

    The masks come from ``rng``, which the network hands to its dropout layers (one stream)."""

    kind = "dropout"

    def __init__(self, rate: float, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if isinstance(rate, bool) or not (isinstance(rate, float | int) and 0 <= rate < 1):
            raise ValueError(f"dropout: rate must be a number in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.rng = rng
        self.mask: np.ndarray | None = None

    def forward(self, A_prev: np.ndarray, training: bool = False) -> np.ndarray:
        if not training or self.rate == 0.0:
            self.mask = None
            return A_prev
        if self.rng is None:
            raise ValueError("dropout: training needs a random generator (Network(rng=...))")
        keep = A_prev.dtype.type(1 - self.rate)
        self.mask = (self.rng.random(A_prev.shape, dtype=A_prev.dtype) >= self.rate) / keep
        return A_prev * self.mask

    def backward(self, dA: np.ndarray, need_dA_prev: bool = True) -> np.ndarray:
        """dA_prev = dA * M / (1 - p), in place on ``dA``."""
        if self.mask is not None:
            dA *= self.mask
        return dA

    def describe(self) -> str:
        return f"dropout({self.rate:g})"
