"""Flatten: (m, d1, d2, ...) -> (m, d1 * d2 * ...), so a dense layer can follow images."""

from __future__ import annotations

import math

import numpy as np

from scratchnn_cli.nn.layers.base import Layer, Shape


class Flatten(Layer):
    """A = A_prev reshaped to one row per sample; backward reshapes dA back."""

    kind = "flatten"

    def output_shape_for(self, input_shape: Shape) -> Shape:
        return (math.prod(input_shape),)

    def forward(self, A_prev: np.ndarray, training: bool = False) -> np.ndarray:
        return A_prev.reshape(A_prev.shape[0], -1)

    def backward(self, dA: np.ndarray, need_dA_prev: bool = True) -> np.ndarray:
        return dA.reshape(dA.shape[0], *self.input_shape)
