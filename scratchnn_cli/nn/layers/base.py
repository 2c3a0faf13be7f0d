"""The layer interface every layer implements: ``forward(A_prev, training) -> A`` and
``backward(dA) -> dA_prev``, with named parameters and gradients.

Shapes: samples are rows, so a layer sees ``A_prev`` of shape (m, *input_shape) and returns
``A`` of shape (m, *output_shape). ``build(input_shape)`` tells a layer the shape of one sample
of its input and returns that of its output; it is called once, by the network.

Parameters. A layer declares the shapes of its trained arrays (``param_shapes``); the network
allocates one flat vector ``theta`` for all of them and one ``dtheta`` for their gradients, and
hands each layer views into both (``bind``). A layer is bound once: it belongs to one network.
Arrays that are not trained but belong to the model (running statistics) are ``state``.
"""

from __future__ import annotations

import math

import numpy as np

Shape = tuple[int, ...]


class Layer:
    """Base class: an identity layer with no parameters."""

    #: the ``type`` of the layer in ``model.layers`` (and in ``summary()``)
    kind = "layer"
    #: the parameters the L1 / L2 penalties act on (weights, never biases or batchnorm's)
    penalized: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}  # name -> view into the network's theta
        self.grads: dict[str, np.ndarray] = {}  # name -> view into the network's dtheta
        self.input_shape: Shape | None = None
        self.output_shape: Shape | None = None
        self._bound = False

    # --- set-up, done once by the network ------------------------------------------------

    def build(self, input_shape: Shape) -> Shape:
        """Record the shape of one input sample; return the shape of one output sample."""
        self.input_shape = tuple(input_shape)
        self.output_shape = self.output_shape_for(self.input_shape)
        return self.output_shape

    def output_shape_for(self, input_shape: Shape) -> Shape:
        """The shape of one output sample for one input sample of ``input_shape``."""
        return input_shape

    def param_shapes(self) -> dict[str, Shape]:
        """Name -> shape of each trained array, in the order they sit in ``theta``."""
        return {}

    def bind(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """Take views into the network's ``theta`` / ``dtheta`` as this layer's arrays."""
        if self._bound:
            raise ValueError(
                f"this {self.kind} layer already belongs to a network: build a new layer for "
                "each network (its weights live in that network's theta)"
            )
        self._bound = True
        self.params, self.grads = params, grads

    def initialize(self, rng: np.random.Generator, init: str, mu: float, sigma: float) -> None:
        """Fill the parameters with initial values (in place). No parameters: nothing to do."""

    def cache_per_sample(self) -> int:
        """How many numbers per sample forward keeps for backward (for the memory estimate)."""
        return math.prod(self.output_shape)

    @property
    def state(self) -> dict[str, np.ndarray]:
        """Arrays that are part of the model but not trained (saved beside the weights)."""
        return {}

    # --- the maths ---------------------------------------------------------------------

    def forward(self, A_prev: np.ndarray, training: bool = False) -> np.ndarray:
        """A = f(A_prev); caches what ``backward`` needs."""
        return A_prev

    def backward(self, dA: np.ndarray, need_dA_prev: bool = True) -> np.ndarray | None:
        """dA_prev = dJ/dA_prev from dA = dJ/dA; fills ``grads``. May overwrite ``dA``."""
        return dA

    def describe(self) -> str:
        """A short description for ``summary()``, e.g. ``dense(64)``."""
        return self.kind
