"""Initial weights: W, b of a dense or convolutional layer, from the scheme the spec names.

normal: W, b ~ Normal(mu, sigma), as in the course assignment (the bias too);
xavier: W ~ Normal(0, sqrt(2 / (n_in + n_out))), b = 0 (Glorot; for sigmoid / tanh);
he:     W ~ Normal(0, sqrt(2 / n_in)), b = 0 (for ReLU).

For a convolution n_in = kh * kw * C_in and n_out = kh * kw * C_out (the fans of one unit).
"""

from __future__ import annotations

import numpy as np

INITS = ("normal", "xavier", "he")


def init_dense(
    W: np.ndarray, b: np.ndarray, rng: np.random.Generator, init: str, mu: float, sigma: float
) -> None:
    """Fill W (n_in, n_out) and b (n_out,) in place (W drawn first, then b, from ``rng``)."""
    n_in, n_out = W.shape
    init_weights(W, b, rng, init, mu, sigma, fan_in=n_in, fan_out=n_out)


def init_weights(
    W: np.ndarray,
    b: np.ndarray,
    rng: np.random.Generator,
    init: str,
    mu: float,
    sigma: float,
    fan_in: int,
    fan_out: int,
) -> None:
    """Fill any weight array W and its bias b in place; xavier and he scale by the number of
    inputs (``fan_in``) and outputs (``fan_out``) of one unit: n_in, n_out for a dense layer,
    kh * kw * C_in and kh * kw * C_out for a convolution."""
    if init == "normal":
        W[...] = rng.normal(mu, sigma, size=W.shape)
        b[...] = rng.normal(mu, sigma, size=b.shape)
    elif init in ("xavier", "he"):
        scale = np.sqrt(2.0 / (fan_in + fan_out)) if init == "xavier" else np.sqrt(2.0 / fan_in)
        W[...] = rng.normal(0.0, scale, size=W.shape)
        b[...] = 0.0
    else:
        raise ValueError(f"unknown init {init!r}: use {', '.join(INITS)}")
