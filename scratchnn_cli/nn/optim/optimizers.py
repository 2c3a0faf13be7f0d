"""Update rules: one small class per rule, all with the same interface.

An optimizer is built as ``Rule(params, lr, **hyper)`` with the list of parameter arrays
``params`` (updated in place), and is called as ``step(grads)`` with the gradients in the same
order. The trainer may change ``optimizer.lr`` between steps (learning-rate schedules).
``state_dict()`` / ``load_state_dict()`` save and restore everything a resumed run needs.

In the formulas, theta is a parameter, g its gradient, lr the learning rate and t the step
number (1 for the first step); every operation is element-wise.

Speed. The trainer calls ``step`` once per sample on tiny networks, where each NumPy call costs
about a microsecond, and once per mini-batch on large ones, where a fresh temporary array per
parameter costs about as much as the arithmetic. So every rule keeps its state in arrays
allocated once, with the parameters' dtype (float32 stays float32), and updates them in place
through one scratch array per parameter.

Subnormal numbers. When a weight's gradient becomes exactly 0 and stays 0 (a dead ReLU unit, a
pixel that is almost always 0), its moment (velocity, mean of g, mean of g^2) shrinks by a factor
beta every step, into the subnormal numbers below ``np.finfo(dtype).tiny``, and then stays there:
rounding ``beta * x`` to the nearest subnormal gives x back once x is a few multiples of the
smallest one. Arithmetic on subnormals is slower (1.2-2x on AMD Zen, 10-100x on many Intel CPUs)
for the rest of the run. So every ``flush_every`` steps (at most 100) the rules with moments set
to 0 the entries below a threshold a little above tiny, chosen so that an entry left in place
cannot decay below tiny before the next flush: no moment reaches a subnormal value by decaying.
This changes no result that matters (the threshold is at most 2048 tiny: 2e-35 in float32,
5e-305 in float64) and costs two NumPy calls per moment array every ``flush_every`` steps.
(A gradient that is 0 from the first step on is harmless: its moments stay exactly 0.)

float16 moments are not flushed: their tiny (6e-5) is not negligible, and NumPy computes float16
in software anyway.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from scratchnn_cli.nn.checks import decay_rate, non_negative, positive

StateDict = dict[str, np.ndarray | float | int]

FLUSH_EVERY_MAX = 100  # steps between two flushes of subnormal moments, at most
FLUSH_DECAY_MAX = 2.0**10  # a moment with g = 0 shrinks by at most this factor between flushes


_CHECKS: dict[str, Callable[[str, Any], float]] = {
    "lr": non_negative,  # a schedule may have brought it to 0 by the time of a checkpoint
    "beta": decay_rate,
    "beta1": decay_rate,
    "beta2": decay_rate,
    "epsilon": positive,  # 0 would turn an always-zero gradient into 0 / 0 = NaN
    "weight_decay": non_negative,
}


@functools.cache
def _hyperparameters(cls: type) -> tuple[tuple[str, Any], ...]:
    """(name, default) of each keyword of ``cls.__init__`` beyond params and lr (read once:
    ``inspect.signature`` costs ~100 µs, and every snapshot of a run asks)."""
    signature = inspect.signature(cls.__init__)
    return tuple(
        (name, p.default)
        for name, p in signature.parameters.items()
        if name not in ("self", "params", "lr")
    )


class Optimizer:
    """Base class: ``step(grads)`` updates ``params`` in place; ``t`` counts the steps taken."""

    def __init__(self, params: list[np.ndarray], lr: float) -> None:
        self.params = list(params)
        for i, p in enumerate(self.params):
            if not (isinstance(p, np.ndarray) and np.issubdtype(p.dtype, np.floating)):
                raise TypeError(f"params[{i}] must be a floating-point NumPy array")
        self.lr = positive("lr", lr)
        self.t = 0
        self.flush_every = FLUSH_EVERY_MAX
        self._flush_below: dict[str, list[float]] = {}

    @staticmethod
    def coef(x: float) -> float:
        """A number the update multiplies arrays by, as a Python float, so float32 arithmetic
        stays float32 (an np.float64 would not)."""
        return float(x)

    @classmethod
    def hyperparameters(cls) -> dict[str, Any]:
        """The keyword arguments of the rule beyond ``params`` and ``lr``, with their defaults."""
        return dict(_hyperparameters(cls))

    def step(self, grads: list[np.ndarray]) -> None:
        """Update every parameter in place from its gradient (same order as ``params``)."""
        raise NotImplementedError

    # --- state: moments, checkpointing, subnormal flushing ----------------------------------

    def moments(self) -> dict[str, tuple[list[np.ndarray], float]]:
        """Name -> (one state array per parameter, factor it decays by per step when g = 0)."""
        return {}

    def flush_thresholds(self) -> dict[str, list[float]]:
        """Name -> per parameter, the value below which a moment entry is set to 0 every
        ``flush_every`` steps (0: never; see the module docstring)."""
        return {name: list(values) for name, values in self._flush_below.items()}

    def arrays_per_param(self) -> int:
        """How many arrays of a parameter's size the rule keeps (moments and scratch)."""
        return sum(1 for _ in self.moments()) + (1 if hasattr(self, "_scratch") else 0)

    def _zeros(self) -> list[np.ndarray]:
        return [np.zeros_like(p) for p in self.params]

    def _choose_flush(self) -> None:
        """Choose ``flush_every`` and the thresholds (see the module docstring)."""
        moments = self.moments()
        every = FLUSH_EVERY_MAX
        for _, beta in moments.values():
            if beta > 0:
                steps = int(math.log(FLUSH_DECAY_MAX) / -math.log(beta))
                every = min(every, max(1, steps))
        self.flush_every = every
        self._flush_below = {}
        for name, (arrays, beta) in moments.items():
            thresholds = []
            for x in arrays:
                if x.dtype.itemsize < 4:  # float16: not flushed
                    thresholds.append(0.0)
                    continue
                tiny = float(np.finfo(x.dtype).tiny)
                decay = beta**every if beta > 0 else 1.0
                # x >= threshold stays >= tiny for ``every`` steps of x <- beta x (2: rounding)
                thresholds.append(2 * tiny * min(1.0 / decay, FLUSH_DECAY_MAX))
            self._flush_below[name] = thresholds

    def _flush(self) -> None:
        """Set to 0 the moment entries so small that decaying would make them subnormal."""
        for name, (arrays, _) in self.moments().items():
            for x, below, scratch in zip(
                arrays, self._flush_below[name], self._scratch, strict=True
            ):
                if below > 0:
                    np.copyto(x, 0, where=np.abs(x, out=scratch) < below)

    def state_dict(self) -> StateDict:
        """Copies of everything the updates depend on: t, lr, hyper-parameters, moment arrays."""
        state: StateDict = {"t": self.t, "lr": float(self.lr)}
        for name in self.hyperparameters():
            state[name] = getattr(self, name)
        for name, (arrays, _) in self.moments().items():
            for i, x in enumerate(arrays):
                state[f"{name}{i}"] = x.copy()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a ``state_dict()``: the next steps are then the ones the saved run would take."""
        expected = self.state_dict()
        missing = sorted(expected.keys() - state.keys())
        extra = sorted(state.keys() - expected.keys())
        if missing or extra:
            raise ValueError(
                f"{type(self).__name__} state: missing keys {missing}, unexpected keys {extra}"
            )
        for key, old in expected.items():
            if isinstance(old, np.ndarray) and np.shape(state[key]) != old.shape:
                raise ValueError(f"state[{key!r}]: shape {np.shape(state[key])} != {old.shape}")
        t = int(state["t"])
        if t < 0:
            raise ValueError(f"state['t'] must be >= 0, got {t}")
        scalars = {
            name: _CHECKS[name](name, state[name]) for name in ("lr", *self.hyperparameters())
        }
        # all checked: now change self
        self.t = t
        for name, value in scalars.items():
            setattr(self, name, value)
        for name, (arrays, _) in self.moments().items():
            for i, x in enumerate(arrays):
                np.copyto(x, state[f"{name}{i}"])
        self._choose_flush()


class SGD(Optimizer):
    """Plain gradient descent: theta <- theta - lr g."""

    def step(self, grads: list[np.ndarray]) -> None:
        lr = self.coef(self.lr)  # keeps lr * g float32 for float32 g
        for p, g in zip(self.params, grads, strict=True):
            p -= lr * g
        self.t += 1


class Momentum(Optimizer):
    """Heavy-ball momentum: v <- beta v - lr g;  theta <- theta + v."""

    def __init__(self, params: list[np.ndarray], lr: float, beta: float = 0.9) -> None:
        super().__init__(params, lr)
        self.beta = decay_rate("beta", beta)
        self.v = self._zeros()  # velocity
        self._scratch = self._zeros()
        self._choose_flush()

    def moments(self) -> dict[str, tuple[list[np.ndarray], float]]:
        return {"v": (self.v, self.beta)}

    def step(self, grads: list[np.ndarray]) -> None:
        lr, beta = self.coef(self.lr), self.beta
        for p, g, v, lr_g in zip(self.params, grads, self.v, self._scratch, strict=True):
            np.multiply(g, lr, out=lr_g)
            v *= beta
            v -= lr_g  # v = beta v - lr g
            p += v
        self.t += 1
        if self.t % self.flush_every == 0:
            self._flush()


class Nesterov(Momentum):
    """Nesterov momentum: v <- beta v - lr g;  theta <- theta + beta v - lr g.

    scikit-learn's form: Sutskever's update, with theta standing for his look-ahead point.
    """

    def step(self, grads: list[np.ndarray]) -> None:
        lr, beta = self.coef(self.lr), self.beta
        for p, g, v, buf in zip(self.params, grads, self.v, self._scratch, strict=True):
            np.multiply(g, lr, out=buf)
            v *= beta
            v -= buf  # v = beta v - lr g
            p -= buf
            np.multiply(v, beta, out=buf)
            p += buf  # theta = theta - lr g + beta v
        self.t += 1
        if self.t % self.flush_every == 0:
            self._flush()


class RMSprop(Optimizer):
    """RMSprop: s <- beta s + (1 - beta) g^2;  theta <- theta - lr g / (sqrt(s) + epsilon)."""

    def __init__(
        self, params: list[np.ndarray], lr: float, beta: float = 0.9, epsilon: float = 1e-8
    ) -> None:
        super().__init__(params, lr)
        self.beta = decay_rate("beta", beta)
        self.epsilon = positive("epsilon", epsilon)
        self.s = self._zeros()  # running mean of g^2
        self._scratch = self._zeros()
        self._choose_flush()

    def moments(self) -> dict[str, tuple[list[np.ndarray], float]]:
        return {"s": (self.s, self.beta)}

    def step(self, grads: list[np.ndarray]) -> None:
        lr, beta, eps = self.coef(self.lr), self.beta, self.epsilon
        for p, g, s, buf in zip(self.params, grads, self.s, self._scratch, strict=True):
            np.multiply(g, g, out=buf)
            buf *= 1.0 - beta
            s *= beta
            s += buf  # s = beta s + (1 - beta) g^2
            np.sqrt(s, out=buf)
            buf += eps
            np.divide(g, buf, out=buf)
            buf *= lr
            p -= buf  # theta = theta - lr g / (sqrt(s) + eps)
        self.t += 1
        if self.t % self.flush_every == 0:
            self._flush()


class Adam(Optimizer):
    """Adam, with bias-corrected moments m^ = m / (1 - b1^t), v^ = v / (1 - b2^t) (Kingma & Ba):

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  theta <- theta - lr m^ / (sqrt(v^) + eps).
    """

    def __init__(
        self,
        params: list[np.ndarray],
        lr: float,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
    ) -> None:
        super().__init__(params, lr)
        self.beta1 = decay_rate("beta1", beta1)
        self.beta2 = decay_rate("beta2", beta2)
        self.epsilon = positive("epsilon", epsilon)
        self.m = self._zeros()  # running mean of g
        self.v = self._zeros()  # running mean of g^2
        self._scratch = self._zeros()
        self._choose_flush()

    def moments(self) -> dict[str, tuple[list[np.ndarray], float]]:
        return {"m": (self.m, self.beta1), "v": (self.v, self.beta2)}

    def step(self, grads: list[np.ndarray]) -> None:
        self.t += 1
        lr = float(self.lr)  # float64 until coef
        b1, b2 = self.beta1, self.beta2
        # lr m_hat / (sqrt(v_hat) + eps) = alpha m / (sqrt(v) + eps_hat) with the two scalars
        # below: the same update, with the bias corrections folded into two Python floats.
        root_c2 = math.sqrt(1.0 - b2**self.t)
        alpha = self.coef(lr * root_c2 / (1.0 - b1**self.t))
        eps_hat = self.epsilon * root_c2
        for p, g, m, v, buf in zip(self.params, grads, self.m, self.v, self._scratch, strict=True):
            m *= b1
            np.multiply(g, 1.0 - b1, out=buf)
            m += buf  # m = b1 m + (1 - b1) g
            v *= b2
            np.multiply(g, g, out=buf)
            buf *= 1.0 - b2
            v += buf  # v = b2 v + (1 - b2) g^2
            np.sqrt(v, out=buf)
            buf += eps_hat
            np.divide(m, buf, out=buf)
            buf *= alpha
            p -= buf  # theta = theta - lr m_hat / (sqrt(v_hat) + eps)
        if self.t % self.flush_every == 0:
            self._flush()


class AdamW(Adam):
    """AdamW: theta <- theta - lr weight_decay theta (decoupled decay), then the Adam step."""

    def __init__(
        self,
        params: list[np.ndarray],
        lr: float,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(params, lr, beta1=beta1, beta2=beta2, epsilon=epsilon)
        self.weight_decay = non_negative("weight_decay", weight_decay)

    def step(self, grads: list[np.ndarray]) -> None:
        lr = float(self.lr)
        shrink = self.coef(1.0 - lr * self.weight_decay)
        for p in self.params:  # every parameter given, biases too if they were passed
            p *= shrink
        super().step(grads)


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "rmsprop": RMSprop,
    "adam": Adam,
    "adamw": AdamW,
}


def make_optimizer(name: str, params: list[np.ndarray], lr: float, **hyper: float) -> Optimizer:
    """``OPTIMIZERS[name](params, lr, **hyper)``; ValueError for unknown names or hypers."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    cls = OPTIMIZERS[name]
    accepted = cls.hyperparameters()
    unknown = sorted(set(hyper) - set(accepted))
    if unknown:
        takes = ", ".join(accepted) or "no hyper-parameters"
        raise ValueError(
            f"optimizer {name!r} does not take {', '.join(unknown)} (it takes: {takes})"
        )
    return cls(params, lr, **hyper)
