"""A network: an ordered list of layers, then the output layer and its cost (``loss``).

``forward`` returns the logits Z of the last layer; ``backward`` takes dZ of the last layer and
fills every layer's gradients. The output activation (sigmoid or softmax) lives in the Loss,
fused with the cross-entropy. Every parameter and gradient is a view into one flat vector,
``theta`` and ``dtheta``, owned by the network: an optimizer updates all weights at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scratchnn_cli.nn.layers import LAYERS, Dense, Dropout, Layer, Shape
from scratchnn_cli.nn.losses import LOSSES, Loss

#: Rows per forward pass when an image network is evaluated (predict, validation).
EVAL_BATCH = 500


@dataclass(frozen=True)
class LayerSummary:
    """One row of ``Network.summary()``."""

    index: int
    layer: str
    output_shape: Shape
    params: int


def output_shapes(layers: Sequence[Layer], input_shape: Shape) -> list[Shape]:
    """The output shape of each layer for samples of ``input_shape`` (builds the layers)."""
    shapes, shape = [], tuple(input_shape)
    for layer in layers:
        shape = layer.build(shape)
        shapes.append(shape)
    return shapes


class Network:
    """``layers`` applied in order to samples of ``input_shape``; the last one gives the logits."""

    def __init__(
        self,
        layers: Sequence[Layer],
        loss: Loss,
        input_shape: Shape | int,
        dtype: np.dtype | type = np.float64,
        rng: np.random.Generator | None = None,
    ) -> None:
        """Allocate ``theta`` / ``dtheta`` (zeros) and bind every layer's arrays to views of them.

        ``rng`` drives the training-time randomness of the layers (dropout masks)."""
        self.layers = list(layers)
        self.loss = loss
        self.input_shape: Shape = (input_shape,) if isinstance(input_shape, int) else input_shape
        output_shapes(self.layers, self.input_shape)
        shapes = [layer.param_shapes() for layer in self.layers]
        total = sum(math.prod(s) for layer_shapes in shapes for s in layer_shapes.values())
        self.theta = np.zeros(total, dtype=dtype)
        self.dtheta = np.zeros(total, dtype=dtype)
        offset = 0
        for layer, layer_shapes in zip(self.layers, shapes, strict=True):
            params, grads = {}, {}
            for name, shape in layer_shapes.items():
                end = offset + math.prod(shape)
                params[name] = _view(self.theta[offset:end], shape)
                grads[name] = _view(self.dtheta[offset:end], shape)
                offset = end
            layer.bind(params, grads)
        self.rng = rng

    @classmethod
    def from_layers(
        cls,
        layers: Sequence[Layer],
        input_shape: Shape | int,
        n_outputs: int,
        output: str = "sigmoid",
        rng: np.random.Generator | None = None,
        mu: float = 0.0,
        sigma: float = 0.1,
        dtype: np.dtype | type = np.float64,
        init: str = "normal",
        dropout_rng: np.random.Generator | None = None,
    ) -> Network:
        """``layers``, then a dense output layer of ``n_outputs`` units, weights drawn from
        ``rng`` (required: no global random state), layer by layer in order.

        A spec's network is made by ``scratchnn_cli.assembly.network_for`` (its one path from a
        ``model`` section), which ends here; this and ``from_struct`` serve code without a spec."""
        if rng is None:
            raise ValueError(
                "pass rng=np.random.default_rng(seed): scratchnn never uses global state"
            )
        net = cls([*layers, Dense(n_outputs)], LOSSES[output](), input_shape, dtype, dropout_rng)
        for layer in net.layers:
            layer.initialize(rng, init, mu, sigma)
        return net

    @classmethod
    def from_struct(
        cls,
        n_features: int,
        struct: Sequence[int],
        n_outputs: int,
        activation: str = "sigmoid",
        output: str = "sigmoid",
        rng: np.random.Generator | None = None,
        mu: float = 0.0,
        sigma: float = 0.1,
        dtype: np.dtype | type = np.float64,
        init: str = "normal",
        dropout: float = 0.0,
        dropout_rng: np.random.Generator | None = None,
    ) -> Network:
        """The short form: a dense layer per entry of ``struct``, each followed by
        ``activation`` (and dropout when ``dropout`` > 0), then the output layer (the rule is
        ``short_form``'s, shared with the config's ``model.struct``)."""
        return cls.from_layers(
            short_form_layers(struct, activation, dropout),
            n_features,
            n_outputs,
            output,
            rng,
            mu,
            sigma,
            dtype,
            init,
            dropout_rng,
        )

    @property
    def rng(self) -> np.random.Generator | None:
        """The generator of the training-time randomness (dropout masks), shared by the layers."""
        return self._rng

    @rng.setter
    def rng(self, rng: np.random.Generator | None) -> None:
        self._rng = rng
        for layer in self.layers:
            if isinstance(layer, Dropout):
                layer.rng = rng

    # --- what the network holds ------------------------------------------------------------

    @property
    def dtype(self) -> np.dtype:
        return self.theta.dtype

    @property
    def sizes(self) -> list[int]:
        """Input width and the width of each dense layer: [n_0, n_1, ..., n_L]."""
        return [
            math.prod(self.input_shape),
            *(x.units for x in self.layers if isinstance(x, Dense)),
        ]

    def params(self) -> list[np.ndarray]:
        """Every trained array, layer by layer ([W0, b0, W1, b1, ...]): views into ``theta``."""
        return [p for layer in self.layers for p in layer.params.values()]

    def grads(self) -> list[np.ndarray]:
        """The gradients, in the order of ``params()``: views into ``dtheta``."""
        return [g for layer in self.layers for g in layer.grads.values()]

    def weights(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(W, dW) of every layer's penalised arrays (dense and conv W; never biases or
        batchnorm's gamma / beta): what L1 / L2 act on."""
        pairs = [(x.params[n], x.grads[n]) for x in self.layers for n in x.penalized]
        return [w for w, _ in pairs], [g for _, g in pairs]

    def summary(self) -> list[LayerSummary]:
        """Per layer, as Keras' ``model.summary()``: output shape and number of parameters."""
        return [
            LayerSummary(
                i, layer.describe(), layer.output_shape, sum(p.size for p in layer.params.values())
            )
            for i, layer in enumerate(self.layers)
        ]

    # --- the maths -------------------------------------------------------------------------

    def forward(self, X: np.ndarray, training: bool = False) -> np.ndarray:
        """Z_L, the logits of the last layer (X is cast to the network's dtype first).

        ``training`` turns on what only training does (dropout masks)."""
        A = np.asarray(X, dtype=self.theta.dtype)
        if A.ndim == 2 and len(self.input_shape) > 1:  # flat rows of images: a free view
            A = A.reshape(A.shape[0], *self.input_shape)
        for layer in self.layers:
            A = layer.forward(A, training)
        return A

    def backward(self, dZ: np.ndarray) -> None:
        """Backpropagate dZ of the last layer: fills the gradients of every layer."""
        dA = dZ
        for i in range(len(self.layers) - 1, -1, -1):
            dA = self.layers[i].backward(dA, i > 0)

    def logits(self, X: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Z_L of every row of X in evaluation mode, ``batch_size`` rows at a time so memory
        stays bounded (default: all at once for networks of flat input, ``EVAL_BATCH`` rows for
        image networks, whose convolutions keep kh x kw copies of their input)."""
        if batch_size is None:
            batch_size = EVAL_BATCH if len(self.input_shape) > 1 else len(X)
        if len(X) <= batch_size:
            return self.forward(X)
        return np.concatenate(
            [self.forward(X[i : i + batch_size]) for i in range(0, len(X), batch_size)]
        )

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities: (m, 1) P(y=1) for a sigmoid output, (m, k) for softmax."""
        return self.loss.output(self.logits(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted class labels (m,)."""
        return self.loss.predict(self.logits(X))

    def cost(self, X: np.ndarray, Y: np.ndarray) -> float:
        """J(X, Y): mean cross-entropy of the network's output against targets Y."""
        return self.loss.cost(self.logits(X), Y)

    # --- saving and loading ----------------------------------------------------------------

    def _named_arrays(self, params: bool = True, state: bool = True) -> dict[str, np.ndarray]:
        """Arrays of the model by their ``model.npz`` names: the parameter or state name + the
        index of the layer among those that hold arrays (W0, b0, W1, b1, ... for dense nets)."""
        named, k = {}, 0
        for layer in self.layers:
            if not (layer.params or layer.state):
                continue
            arrays = {**(layer.params if params else {}), **(layer.state if state else {})}
            named.update({f"{name}{k}": array for name, array in arrays.items()})
            k += 1
        return named

    def buffers(self) -> dict[str, np.ndarray]:
        """A copy of the layers' untrained state (running statistics), by ``model.npz`` name."""
        return {name: a.copy() for name, a in self._named_arrays(params=False).items()}

    def load_buffers(self, buffers: dict[str, np.ndarray]) -> None:
        """Restore ``buffers()`` (an empty mapping for networks without state)."""
        for name, array in self._named_arrays(params=False).items():
            array[...] = buffers[name]

    def state(self) -> dict[str, np.ndarray]:
        """A copy of every array of the model (what ``model.npz`` holds)."""
        return {name: array.copy() for name, array in self._named_arrays().items()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Copy arrays from ``state()``-shaped ones; every name and shape is checked first."""
        pairs = []
        for name, old in self._named_arrays().items():
            if name not in state:
                raise KeyError(f"{name} is missing")
            new = np.asarray(state[name])
            if new.shape != old.shape:
                raise ValueError(f"{name}: shape {new.shape} does not match {old.shape}")
            pairs.append((old, new))
        for old, new in pairs:
            old[...] = new


def _view(part: np.ndarray, shape: Shape) -> np.ndarray:
    """``part`` of theta reshaped to ``shape``, always a view (never a silent copy)."""
    view = part.reshape(shape)
    if not np.shares_memory(view, part):  # cannot happen for slices of a C-ordered theta
        raise RuntimeError(f"a parameter of shape {shape} would not be a view into theta")
    return view


def short_form(
    struct: Sequence[int], activation: str, dropout: float = 0.0
) -> list[tuple[str, dict[str, Any]]]:
    """The short form ``struct`` + ``activation`` (+ ``dropout``) as (layer type, settings)
    entries: dense, g, [dropout], ... The one statement of the rule: ``short_form_layers``
    makes these layers, the config's ``ModelConfig.layer_specs`` their ``model.layers`` entries."""
    entries: list[tuple[str, dict[str, Any]]] = []
    for units in struct:
        entries += [("dense", {"units": units}), (activation, {})]
        if dropout > 0:
            entries.append(("dropout", {"rate": dropout}))
    return entries


def short_form_layers(struct: Sequence[int], activation: str, dropout: float = 0.0) -> list[Layer]:
    """``struct`` + ``activation`` (+ ``dropout``) as a layer list: dense, g, [dropout], ..."""
    return [LAYERS[kind](**settings) for kind, settings in short_form(struct, activation, dropout)]
