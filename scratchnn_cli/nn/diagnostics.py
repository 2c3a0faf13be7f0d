"""Why didn't it learn? Per-layer statistics of a network on a probe (a fixed set of samples).

A forward and a backward pass over the probe give, per layer:

- ``weight_norm`` ||W||_F and ``grad_norm`` ||dJ/dW||_F (J: the probe's mean cross-entropy, no
  L1 / L2 term), for the layers with a penalised weight array (dense and conv W);
- ``update_ratio`` lr ||dJ/dW|| / ||W||: the relative size of a plain gradient step (Karpathy's
  rule of thumb: about 1e-3; far below, the layer barely moves; far above, it jumps around;
  momentum and Adam take other steps than lr dJ/dW, so for them it is a rough guide);
- ``saturated`` (sigmoid, tanh): the share of outputs where the slope g' is under 1% of its peak,
  so that almost no gradient flows back through them;
- ``dead`` (relu, leaky_relu): the share of units that are positive on no probe sample at all;
- ``twins`` (dense): the share of units with a near-identical twin (same incoming weights and
  bias), which get the same gradient and stay twins: the symmetric plateau of equal initial
  weights.

The probe runs in inference mode, as ``Network.predict`` does: no dropout, batch norm on its
running statistics. That is what the model does; it is deterministic (the same weights give the
same statistics, epoch after epoch); and it draws no dropout mask from ``net.rng`` and updates
no running statistic, so neither is touched. Both backward passes that depend on the mode
handle it: dropout's backward is the identity without a mask, batch norm's is the affine map of
fixed statistics. The gradient is therefore that of the inference-mode cost (what ``net.cost``
gives), not the gradient of a training step: with dropout it has no mask's noise, with batch
norm it treats the running statistics as constants (which lag behind the batch statistics early
in training: after one full-batch update they are still 90% their initial 0 and 1).

The passes run a chunk of samples at a time, so that the caches forward keeps for backward
(a convolution's im2col columns above all) stay within ``CHUNK_CACHE`` numbers whatever the
probe's size: the cost and the gradient are the chunks' means weighted by their sizes, the
shares are counted over every chunk. A network that keeps under CHUNK_CACHE / 512 numbers
per sample (dense networks up to a few thousand units per layer) probes in one chunk.

The passes compute in the network's dtype (the numbers training computes, float32 or float64);
the statistics reduce in float64 (norms, shares, pairwise distances) and come out as Python
floats. ``probe_statistics`` leaves the network as it was: it reads theta, and puts back the
gradients (``dtheta``) and every layer's caches (what forward keeps for backward) afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from scratchnn_cli.nn.layers import Dense, Layer
from scratchnn_cli.nn.network import Network

#: "Saturated": the slope g'(Z) below this fraction of its peak (sigmoid 1/4, tanh 1). At 1% a
#: unit passes back a hundredth of the gradient it would pass at Z = 0: all but switched off.
SATURATED_BELOW = 0.01
#: The peak of g' for each saturating activation: sigmoid's A (1 - A) at A = 1/2, tanh's 1 - A^2
#: at A = 0.
PEAK_SLOPE = {"sigmoid": 0.25, "tanh": 1.0}
#: Twins: two units whose [w, b] differ by at most this fraction of the longer one. Units
#: started equal get equal gradients and stay equal (to the bit, in 300 steps of a 784-64-32-10
#: net here; rounding would be 1e-7 relative in float32), while units drawn independently differ
#: by about their own length (sqrt(2) of it for zero-mean draws): 1e-3 lies far from both.
TWIN_TOLERANCE = 1e-3
#: The pairwise distances of n units of d inputs cost n^2 (d + 1) multiply-adds: a layer above
#: this many is skipped (twins None). 2^31 is ~0.2 s here: up to ~1,650 units of 784 inputs,
#: ~2,900 of 256, ~4,000 of 128.
TWIN_MAX_WORK = 2**31
#: Distances are computed a block of rows at a time: at most this many per block (8 MiB).
TWIN_BLOCK_ENTRIES = 2**20
#: The most numbers the probe's caches may hold at once (64 MiB in float32): a chunk of the
#: probe is as many samples as fit (``Layer.cache_per_sample`` summed over the layers). A
#: 784-256-128-10 MLP keeps 778 per sample (its 512 samples in one chunk), the Fashion-MNIST
#: CNN of configs/fashion_cnn.yaml 239,514 (chunks of 70).
CHUNK_CACHE = 2**24


@dataclass(frozen=True)
class LayerDiagnostics:
    """One layer's statistics on the probe (None where a statistic does not apply)."""

    layer: int  # index into net.layers
    kind: str  # layer.kind: "dense", "conv2d", "sigmoid", "tanh", "relu", "leaky_relu", ...
    weight_norm: float | None  # ||W||_F of the layer's penalised arrays (dense and conv W)
    grad_norm: float | None  # ||dJ/dW||_F of the probe's mean cross-entropy (no L1 / L2 term)
    update_ratio: float | None  # lr grad_norm / weight_norm; None if weight_norm == 0
    saturated: float | None  # sigmoid / tanh: share of (sample, unit) entries with g' < 1% peak
    dead: float | None  # relu / leaky_relu: share of units positive on no probe sample
    twins: float | None  # dense, >= 2 units: share of units with a near-identical twin


def initial_cost_reference(n_classes: int) -> float:
    """ln K: the cost of a network that gives every class the same probability (K = 2 for a
    sigmoid output): -ln(1 / K) per sample. Small initial weights give logits near 0, so a
    network starts near it; far above it, the initial weights are too large."""
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer) or n_classes < 2:
        raise ValueError(f"n_classes must be a whole number >= 2, got {n_classes!r}")
    return math.log(n_classes)


def probe_statistics(
    net: Network, X: np.ndarray, Y: np.ndarray, lr: float
) -> tuple[float, list[LayerDiagnostics]]:
    """(the mean cost on the probe, one LayerDiagnostics per layer), leaving ``net`` exactly as
    it was.

    ``X``: the probe's samples (flat rows, or images for an image network); ``Y``: their targets
    as the loss encodes them (``net.loss.targets``: (m, 1) for a sigmoid output, one-hot (m, K)
    for softmax). Inference mode (see the module docstring). Call it between updates, or even
    between a training step's forward and backward: the caches that backward needs are put back.
    Weights that overflow give inf / nan statistics, with no warning (as in training, whose
    divergence check sees them): a norm is inf once its sum of squares overflows (float64).
    """
    X = np.asarray(X, dtype=net.dtype).reshape(len(X), *net.input_shape)
    Y = np.asarray(Y, dtype=net.dtype)
    n = len(X)
    if len(Y) != n:
        raise ValueError(f"Y has shape {Y.shape}, for {n} samples of X")
    outputs = (n, *net.layers[-1].output_shape)
    if Y.shape != outputs:
        raise ValueError(f"Y has shape {Y.shape}, the network's outputs {outputs}")
    cache = sum(layer.cache_per_sample() for layer in net.layers)
    size = max(1, min(n, CHUNK_CACHE // max(cache, 1)))
    activity = [_Activity(layer.kind) for layer in net.layers]
    cost, gradient = 0.0, np.zeros(net.dtheta.shape) if size < n else None
    with _untouched(net), np.errstate(over="ignore", invalid="ignore"):  # inf / nan out
        for start in range(0, n, size):
            A, Y_chunk = X[start : start + size], Y[start : start + size]
            for layer, seen in zip(net.layers, activity, strict=True):  # as Network.forward
                A = layer.forward(A, False)
                seen.add(A)
            share = len(A) / n  # the chunk's part of the probe's means
            cost += share * float(net.loss.cost(A, Y_chunk))
            net.backward(net.loss.dZ(A, Y_chunk))  # dtheta: the chunk's mean gradient
            if gradient is not None:
                gradient += share * net.dtheta.astype(np.float64)
        if gradient is not None:
            net.dtheta[...] = gradient  # the probe's mean gradient, read below
        rows = [
            _layer_row(i, layer, lr, *seen.shares())
            for i, (layer, seen) in enumerate(zip(net.layers, activity, strict=True))
        ]  # read the gradients before _untouched puts dtheta back
    return cost, rows


def _layer_row(
    i: int, layer: Layer, lr: float, saturated: float | None, dead: float | None
) -> LayerDiagnostics:
    """Layer i's row: its norms and twins from its arrays, the shares from its output."""
    weight_norm = grad_norm = update_ratio = None
    if layer.penalized:
        weight_norm = frobenius([layer.params[name] for name in layer.penalized])
        grad_norm = frobenius([layer.grads[name] for name in layer.penalized])
        update_ratio = None if weight_norm == 0 else lr * grad_norm / weight_norm
    twins = twin_share(layer.W, layer.b) if isinstance(layer, Dense) else None
    return LayerDiagnostics(
        i, layer.kind, weight_norm, grad_norm, update_ratio, saturated, dead, twins
    )


# --- the statistics ------------------------------------------------------------------------


def frobenius(arrays: list[np.ndarray]) -> float:
    """||W||_F = sqrt(sum_ij W_ij^2), over all of ``arrays`` together, in float64."""
    return math.sqrt(sum(float(np.sum(np.square(W, dtype=np.float64))) for W in arrays))


class _Activity:
    """What a layer's outputs show over the probe's chunks:

    - sigmoid / tanh, ``saturated``: the mean of [A (1 - A) < 1% of 1/4] (sigmoid) or [1 - A^2 <
      1% of 1] (tanh) over every entry (sample, unit; and position, for images) of the output A;
    - relu / leaky relu, ``dead``: the mean over units u of [A_iu <= 0 for every probe sample
      i], a unit being one entry of a sample's output (for images: one channel at one position).
      A > 0 exactly where Z > 0 for both (leaky ReLU's slope below 0 is in [0, 1)).

    None for the other kinds."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.saturated_entries = self.entries = 0
        self.alive: np.ndarray | None = None  # per unit: positive on some sample so far

    def add(self, A: np.ndarray) -> None:
        """Count a chunk's outputs A."""
        if self.kind == "sigmoid":
            slope = A * (1 - A)  # g'(Z) = sigma(Z) (1 - sigma(Z))
        elif self.kind == "tanh":
            slope = 1 - A * A  # g'(Z) = 1 - tanh(Z)^2
        elif self.kind in ("relu", "leaky_relu"):
            alive = np.any(A.reshape(len(A), -1) > 0, axis=0)
            self.alive = alive if self.alive is None else self.alive | alive
            return
        else:
            return
        limit = SATURATED_BELOW * PEAK_SLOPE[self.kind]
        self.saturated_entries += int(np.count_nonzero(slope < limit))
        self.entries += slope.size

    def shares(self) -> tuple[float | None, float | None]:
        """(saturated, dead): the shares seen, None where they do not apply."""
        saturated = self.saturated_entries / self.entries if self.entries else None
        dead = None if self.alive is None else float(np.mean(~self.alive))
        return saturated, dead


def twin_share(W: np.ndarray, b: np.ndarray) -> float | None:
    """The share of units j with a twin k != j: ||v_j - v_k|| <= TWIN_TOLERANCE max(||v_j||,
    ||v_k||), v_j = [W[:, j], b_j] the unit's incoming weights and bias (float64). Two all-zero
    units are twins (0 <= 0). None for a single unit, and for layers whose n^2 (d + 1)
    multiply-adds exceed TWIN_MAX_WORK (several thousand units: skipped, as too costly).

    The squared distances come from the Gram matrix, a block of units against all at a time:
    ||v_j - v_k||^2 = ||v_j||^2 + ||v_k||^2 - 2 v_j . v_k. Its rounding (~d 1e-16 ||v||^2) is far
    below the tolerance (1e-6 ||v||^2)."""
    V = np.concatenate([W.T, b[:, None]], axis=1).astype(np.float64)  # (n, d + 1): v_j a row
    n = len(V)
    if n < 2 or n * n * V.shape[1] > TWIN_MAX_WORK:
        return None
    sq = np.einsum("jd,jd->j", V, V)  # ||v_j||^2
    has_twin = np.zeros(n, dtype=bool)
    block = max(1, TWIN_BLOCK_ENTRIES // n)
    for start in range(0, n, block):
        j = np.arange(start, min(start + block, n))
        dist2 = sq[j, None] + sq[None, :] - 2 * (V[j] @ V.T)  # ||v_j - v_k||^2, (block, n)
        bound = TWIN_TOLERANCE**2 * np.maximum(sq[j, None], sq[None, :])
        near = dist2 <= bound
        near[np.arange(len(j)), j] = False  # a unit is not its own twin
        has_twin[j] = near.any(axis=1)
    return float(np.mean(has_twin))


# --- leaving the network as it was ---------------------------------------------------------


@contextmanager
def _untouched(net: Network) -> Iterator[None]:
    """Put back, on the way out, what a forward and backward pass write: the gradients (dtheta,
    whose views are the layers' grads) and the layers' attributes (the caches forward keeps for
    backward: Z, A, A_prev, masks, x^, im2col columns), so that a probe taken between a training
    step's forward and backward changes nothing, and the probe's caches are freed. theta is
    only read; inference mode touches neither ``net.rng`` nor the running statistics."""
    dtheta = net.dtheta.copy()
    attributes = [dict(vars(layer)) for layer in net.layers]
    try:
        yield
    finally:
        net.dtheta[...] = dtheta
        for layer, saved in zip(net.layers, attributes, strict=True):
            vars(layer).clear()
            vars(layer).update(saved)
