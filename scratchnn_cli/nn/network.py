"""A feed-forward network: Dense layers with a hidden activation, and an output + cost (Loss).

``forward`` returns the logits Z of the last layer; ``backward`` takes dZ of the last layer and
fills every layer's dW and db. The output activation (sigmoid or softmax) lives in the Loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scratchnn_cli.nn.layers.activations import ACTIVATIONS, Activation
from scratchnn_cli.nn.layers.dense import Dense
from scratchnn_cli.nn.losses import LOSSES, Loss


def init_weights(
    sizes: Sequence[int],
    rng: np.random.Generator,
    mu: float = 0.0,
    sigma: float = 0.1,
    dtype: np.dtype | type = np.float64,
    init: str = "normal",
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Initial W and b of every layer.

    normal: W, b ~ Normal(mu, sigma), as in the course assignment (the bias too);
    xavier: W ~ Normal(0, sqrt(2 / (n_in + n_out))), b = 0 (Glorot; for sigmoid/tanh);
    he:     W ~ Normal(0, sqrt(2 / n_in)), b = 0 (for ReLU).
    """
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        if init == "normal":
            W = rng.normal(mu, sigma, size=(n_in, n_out))
            b = rng.normal(mu, sigma, size=n_out)
        elif init in ("xavier", "he"):
            scale = np.sqrt(2.0 / (n_in + n_out)) if init == "xavier" else np.sqrt(2.0 / n_in)
            W = rng.normal(0.0, scale, size=(n_in, n_out))
            b = np.zeros(n_out)
        else:
            raise ValueError(f"unknown init {init!r}: use normal, xavier or he")
        params.append((W.astype(dtype), b.astype(dtype)))
    return params


class Network:
    """Layers n_0 -> struct -> n_out; hidden activation g; output + cost in ``loss``."""

    def __init__(
        self,
        layers: list[Dense],
        activation: Activation,
        loss: Loss,
        dropout: float = 0.0,
    ) -> None:
        self.layers = layers
        self.activation = activation
        self.loss = loss
        self.dropout = dropout
        # All W and b live in one flat vector theta (each layer's W, b are views into it), and
        # all dW, db in dtheta: an optimizer then updates every weight with a few NumPy calls.
        dtype = layers[0].W.dtype
        total = sum(layer.W.size + layer.b.size for layer in layers)
        self.theta = np.empty(total, dtype=dtype)
        self.dtheta = np.zeros(total, dtype=dtype)
        offset = 0
        for layer in layers:
            for name in ("W", "b"):
                value = getattr(layer, name)
                end = offset + value.size
                view = self.theta[offset:end].reshape(value.shape)
                view[...] = value
                setattr(layer, name, view)
                setattr(layer, "d" + name, self.dtheta[offset:end].reshape(value.shape))
                offset = end
        self._Z: list[np.ndarray] = []
        self._A: list[np.ndarray] = []
        self._masks: list[np.ndarray] = []

    @classmethod
    def build(
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
    ) -> Network:
        """A network with freshly initialised weights (``rng`` is required: no global state)."""
        if rng is None:
            raise ValueError(
                "pass rng=np.random.default_rng(seed): scratchnn never uses global state"
            )
        sizes = [n_features, *struct, n_outputs]
        layers = [Dense(W, b) for W, b in init_weights(sizes, rng, mu, sigma, dtype, init)]
        return cls(layers, ACTIVATIONS[activation](), LOSSES[output](), dropout)

    @property
    def sizes(self) -> list[int]:
        """Layer widths, input first: [n_0, n_1, ..., n_L]."""
        return [self.layers[0].W.shape[0], *(layer.W.shape[1] for layer in self.layers)]

    @property
    def dtype(self) -> np.dtype:
        return self.layers[0].W.dtype

    def params(self) -> list[np.ndarray]:
        """[W0, b0, W1, b1, ...] (layer 0 first): views into ``theta``, updated in place."""
        return [p for layer in self.layers for p in (layer.W, layer.b)]

    def grads(self) -> list[np.ndarray]:
        """[dW0, db0, dW1, db1, ...], in the order of ``params()``; valid after ``backward``."""
        return [g for layer in self.layers for g in (layer.dW, layer.db)]

    def forward(self, X: np.ndarray, dropout_rng: np.random.Generator | None = None) -> np.ndarray:
        """Z_L, the logits of the last layer; caches each hidden Z and A = g(Z) for backward.

        With ``dropout_rng`` (training only) and ``dropout`` = p > 0, each hidden A is multiplied
        by a mask M / (1 - p), M_ij ~ Bernoulli(1 - p) (inverted dropout: no rescaling at test).
        """
        g = self.activation
        drop = self.dropout if dropout_rng is not None else 0.0
        self._Z.clear()
        self._A.clear()
        self._masks.clear()
        A = X
        for layer in self.layers[:-1]:
            Z = layer.forward(A)
            A = g.forward(Z)
            self._Z.append(Z)
            self._A.append(A)
            if drop > 0.0:
                mask = (dropout_rng.random(A.shape, dtype=A.dtype) >= drop) / A.dtype.type(1 - drop)
                self._masks.append(mask)
                A = A * mask
        return self.layers[-1].forward(A)

    def backward(self, dZ: np.ndarray) -> None:
        """Backpropagate dZ of the last layer: fills dW, db of every layer."""
        g = self.activation
        for i in range(len(self.layers) - 1, 0, -1):
            dA = self.layers[i].backward(dZ)
            if self._masks:
                dA *= self._masks[i - 1]
            dZ = g.backward(self._Z[i - 1], self._A[i - 1], dA)
        self.layers[0].backward(dZ, need_dA=False)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities: (m, 1) P(y=1) for a sigmoid output, (m, k) for softmax."""
        return self.loss.output(self.forward(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted class labels (m,)."""
        return self.loss.predict(self.forward(X))

    def cost(self, X: np.ndarray, Y: np.ndarray) -> float:
        """J(X, Y): mean cross-entropy of the network's output against targets Y."""
        return self.loss.cost(self.forward(X), Y)

    def state(self) -> dict[str, np.ndarray]:
        """A copy of the weights as a mapping W0, b0, W1, b1, ... (what ``model.npz`` holds)."""
        out = {}
        for i, layer in enumerate(self.layers):
            out[f"W{i}"] = layer.W.copy()
            out[f"b{i}"] = layer.b.copy()
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Copy weights from ``state()``-shaped arrays; every shape is checked before any copy."""
        pairs = []
        for i, layer in enumerate(self.layers):
            for name in ("W", "b"):
                new = np.asarray(state[f"{name}{i}"])
                old = getattr(layer, name)
                if new.shape != old.shape:
                    raise ValueError(f"{name}{i}: shape {new.shape} does not match {old.shape}")
                pairs.append((old, new))
        for old, new in pairs:
            old[...] = new
