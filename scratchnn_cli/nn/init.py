"""Initial weights: W, b of a dense layer drawn from the scheme the spec names.

normal: W, b ~ Normal(mu, sigma), as in the course assignment (the bias too);
xavier: W ~ Normal(0, sqrt(2 / (n_in + n_out))), b = 0 (Glorot; for sigmoid / tanh);
he:     W ~ Normal(0, sqrt(2 / n_in)), b = 0 (for ReLU).
"""

from __future__ import annotations

import numpy as np

INITS = ("normal", "xavier", "he")


def init_dense(
    W: np.ndarray, b: np.ndarray, rng: np.random.Generator, init: str, mu: float, sigma: float
) -> None:
    """Fill W (n_in, n_out) and b (n_out,) in place (W drawn first, then b, from ``rng``)."""
    n_in, n_out = W.shape
    if init == "normal":
        W[...] = rng.normal(mu, sigma, size=W.shape)
        b[...] = rng.normal(mu, sigma, size=b.shape)
    elif init in ("xavier", "he"):
        scale = np.sqrt(2.0 / (n_in + n_out)) if init == "xavier" else np.sqrt(2.0 / n_in)
        W[...] = rng.normal(0.0, scale, size=W.shape)
        b[...] = 0.0
    else:
        raise ValueError(f"unknown init {init!r}: use {', '.join(INITS)}")
