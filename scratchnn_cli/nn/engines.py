"""Which engine trains an epoch: the NumPy layers, or the same formulas compiled (``compiled.py``).

``train.engine`` is ``auto`` (the default), ``numpy`` or ``compiled``. The compiled engine runs a
dense network (any depth; sigmoid, tanh, relu, leaky_relu or no activation between the dense
layers; a sigmoid or softmax output with its cross-entropy), any update rule, L1 / L2, float64
or float32. ``auto`` takes it where it runs the spec and pays: for one sample per update, and
for mini-batches while parameters x rows per update stay below ``COMPILED_PAYS_BELOW``, past which
NumPy's matrix products (BLAS) win. This is the one definition of both, used by training,
sweeps, ``scratchnn summary`` and the estimator.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scratchnn_cli.nn.compiled_codes import ACTIVATION_CODES, HYPER, OUTPUT_CODES, RULES
from scratchnn_cli.nn.layers import Activation, Dense, Layer
from scratchnn_cli.nn.network import Network
from scratchnn_cli.nn.optim.optimizers import OPTIMIZERS, Optimizer

ENGINES = ("auto", "numpy", "compiled")
#: auto takes the compiled engine for mini-batches while parameters x rows per update stay below
#: this. ``make bench`` (section engines) measured one sample per update paying on every network
#: tried (2-5-1 to 784-256-128-10), batches paying up to 5,376 (2-5-1, batch 256: 1.5x) and losing
#: from 38,560 (64-32-10, batch 16: 0.7-0.9x)
COMPILED_PAYS_BELOW = 20_000


class EngineError(ValueError):
    """``train.engine: compiled`` asked for a spec the compiled engine cannot run."""


def dense_layout(layers: Sequence[Layer]) -> tuple[list[int], list[Activation | None]] | str:
    """(units of each dense layer, the activation after each hidden one, None for none) when
    ``layers`` are dense layers each followed by at most one element-wise activation; else why
    not (a phrase)."""
    units: list[int] = []
    acts: list[Activation | None] = []
    for layer in layers:
        if isinstance(layer, Dense):
            if len(acts) < len(units):
                acts.append(None)  # dense right after dense: no activation between
            units.append(layer.units)
        elif isinstance(layer, Activation) and layer.kind in ACTIVATION_CODES:
            if len(acts) == len(units):
                return f"an activation ({layer.kind}) that does not follow a dense layer"
            acts.append(layer)
        else:
            return f"a {layer.kind} layer"
    if len(acts) == len(units):
        return "an activation after its output layer"
    return units, acts


def compiled_unsupported(net: Network, optimizer: str, augments: bool = False) -> str | None:
    """Why the compiled engine cannot train ``net`` with the update rule ``optimizer`` (a
    phrase naming what it does not run), or None when it can."""
    if len(net.input_shape) != 1:
        return f"image input of shape {net.input_shape} (flat rows only)"
    plan = dense_layout(net.layers)
    if isinstance(plan, str):
        return f"the network has {plan}"
    if optimizer not in RULES:
        return f"the update rule {optimizer}"
    if augments:
        return "image augmentation"
    if net.dtype not in (np.float64, np.float32):
        return f"dtype {net.dtype}"
    return None


def compiled_pays(net: Network, rows_per_update: int) -> bool:
    """Whether the compiled loops beat NumPy's matrix products on updates of this size."""
    return rows_per_update == 1 or net.theta.shape[-1] * rows_per_update < COMPILED_PAYS_BELOW


@dataclass(frozen=True)
class EngineChoice:
    """The engine that trains (``numpy`` or ``compiled``), why, and a line to show the user
    when the choice is not the one they would expect (numba missing)."""

    engine: str
    why: str
    note: str | None = None


@functools.cache
def numba_missing() -> str | None:
    """Why numba cannot be imported here (one line), or None when it can."""
    try:
        import numba  # noqa: F401
    except Exception as exc:  # an ImportError, or a numba built for another NumPy
        return f"numba cannot be imported ({type(exc).__name__}: {exc})"
    return None


def choose_engine(
    requested: str, net: Network, optimizer: str, rows_per_update: int, augments: bool = False
) -> EngineChoice:
    """Which engine trains ``net`` for ``train.engine: requested``. EngineError when
    ``compiled`` is asked for and cannot run the spec (the message names what it does not run)."""
    if requested not in ENGINES:
        raise EngineError(f"train.engine: {requested!r} is not one of {', '.join(ENGINES)}")
    if requested == "numpy":
        return EngineChoice("numpy", "train.engine: numpy")
    why = compiled_unsupported(net, optimizer, augments)
    if requested == "compiled":
        if why is None:
            why = numba_missing()
        if why is not None:
            raise EngineError(f"train.engine: compiled cannot train this spec: {why}")
        return EngineChoice("compiled", "train.engine: compiled")
    if why is not None:
        return EngineChoice("numpy", f"auto; the compiled engine cannot train it: {why}")
    if not compiled_pays(net, rows_per_update):
        return EngineChoice("numpy", "auto: updates this large run faster as matrix products")
    missing = numba_missing()
    if missing is not None:
        return EngineChoice("numpy", f"auto: {missing}", f"{missing}: training with numpy")
    return EngineChoice("compiled", "auto: a dense network with small updates")


class CompiledEpoch:
    """``net`` and its ``optimizer`` bound to the compiled loops: ``run(X, Y, order, B, Z_out)``
    trains one epoch exactly where the NumPy engine would (theta, dtheta, the optimizer's moments
    and step count t)."""

    def __init__(self, net: Network, optimizer: Optimizer, l1: float, l2: float) -> None:
        from scratchnn_cli.nn import compiled  # numba: imported only when this engine runs

        plan = dense_layout(net.layers)  # choose_engine said it runs: a plan, not a reason
        assert not isinstance(plan, str), plan
        units, acts = plan
        rule = next(name for name, cls in OPTIMIZERS.items() if type(optimizer) is cls)
        self.kernel = compiled.run_epoch
        self.net, self.optimizer, self.rule = net, optimizer, RULES.index(rule)
        self.sizes = np.array([net.input_shape[0], *units], dtype=np.int64)
        codes = [ACTIVATION_CODES[a.kind] if a is not None else 0 for a in acts]
        self.acts = np.array([*codes, 0], dtype=np.int64)
        self.alphas = np.array([*(getattr(a, "alpha", 0.0) for a in acts), 0.0], dtype=np.float64)
        self.output = OUTPUT_CODES[net.loss.name]
        self.l1, self.l2 = float(l1), float(l2)
        self.none = np.empty(0, dtype=net.dtype)

    def run(
        self, X: np.ndarray, Y: np.ndarray, order: np.ndarray, B: int, Z_out: np.ndarray
    ) -> tuple[float, float]:
        """One update per batch of B rows of ``order``; the logits land in Z_out's rows.
        Returns the epoch's (cost J, accuracy) over the samples its updates saw."""
        opt, net = self.optimizer, self.net
        moments = [arrays[0] for arrays, _ in opt.moments().values()]
        below = [values[0] for values in opt.flush_thresholds().values()]
        m1, m2 = [*moments, self.none, self.none][:2]
        below1, below2 = [*below, 0.0, 0.0][:2]
        values = {"beta1": getattr(opt, "beta", 0.0), "l1": self.l1, "l2": self.l2, "lr": opt.lr}
        values |= {name: getattr(opt, name) for name in opt.hyperparameters()}
        hyper = np.array([values.get(name, 0.0) for name in HYPER], dtype=np.float64)
        opt.t, cost_sum, hits = self.kernel(
            net.theta,
            net.dtheta,
            self.sizes,
            self.acts,
            self.alphas,
            self.output,
            X,
            Y,
            np.ascontiguousarray(order, dtype=np.int64),
            B,
            Z_out,
            self.rule,
            hyper,
            m1,
            m2,
            opt.t,
            opt.flush_every,
            float(below1),
            float(below2),
        )
        n = len(order)
        return cost_sum / n, hits / n
