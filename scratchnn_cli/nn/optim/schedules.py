"""Per-epoch learning-rate schedules: lr(epoch) for epoch = 0, 1, 2, ... (epoch 0 gets lr0).

Each schedule is a small class called as ``schedule(epoch) -> float`` (a Python float, so a
float32 network stays float32). Build one by name with ``make_schedule(name, lr0, **params)``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from scratchnn_cli.nn.checks import count, factor, number, positive


class Schedule:
    """Base class: ``lr0``, and ``__call__(epoch)`` giving the learning rate of that epoch."""

    def __init__(self, lr0: float) -> None:
        self.lr0 = positive("lr0", lr0)

    def __call__(self, epoch: int) -> float:
        return self.lr(count("epoch", epoch, 0))

    def lr(self, epoch: int) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """lr(epoch) = lr0."""

    def lr(self, epoch: int) -> float:
        return self.lr0


class Step(Schedule):
    """lr(epoch) = lr0 * drop ** floor(epoch / every)."""

    def __init__(self, lr0: float, drop: float = 0.5, every: int = 10) -> None:
        super().__init__(lr0)
        self.drop = factor("drop", drop)
        self.every = count("every", every, 1)

    def lr(self, epoch: int) -> float:
        return self.lr0 * self.drop ** (epoch // self.every)


class Exponential(Schedule):
    """lr(epoch) = lr0 * gamma ** epoch."""

    def __init__(self, lr0: float, gamma: float = 0.95) -> None:
        super().__init__(lr0)
        self.gamma = factor("gamma", gamma)

    def lr(self, epoch: int) -> float:
        return self.lr0 * self.gamma**epoch


class Cosine(Schedule):
    """lr(epoch) = lr_min + (lr0 - lr_min) (1 + cos(pi min(epoch, T) / T)) / 2, T = epochs."""

    def __init__(self, lr0: float, epochs: int, lr_min: float = 0.0) -> None:
        super().__init__(lr0)
        self.epochs = count("epochs", epochs, 1)
        lr_min = number("lr_min", lr_min)
        if not 0 <= lr_min <= self.lr0:
            raise ValueError(f"lr_min must be in [0, lr0 = {self.lr0}], got {lr_min}")
        self.lr_min = float(lr_min)

    def lr(self, epoch: int) -> float:
        T = self.epochs
        return (
            self.lr_min + (self.lr0 - self.lr_min) * (1 + math.cos(math.pi * min(epoch, T) / T)) / 2
        )


SCHEDULES: dict[str, type[Schedule]] = {
    "constant": Constant,
    "step": Step,
    "exponential": Exponential,
    "cosine": Cosine,
}


def make_schedule(name: str, lr0: float, **params: Any) -> Callable[[int], float]:
    """``SCHEDULES[name](lr0, **params)``: epoch -> lr; ValueError for unknown or missing params."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of: {', '.join(SCHEDULES)}")
    cls = SCHEDULES[name]
    signature = inspect.signature(cls.__init__).parameters
    accepted = [p for p in signature if p not in ("self", "lr0")]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        takes = ", ".join(accepted) or "no parameters"
        raise ValueError(
            f"schedule {name!r} does not take {', '.join(unknown)} (it takes: {takes})"
        )
    missing = [
        p for p in accepted if signature[p].default is inspect.Parameter.empty and p not in params
    ]
    if missing:
        raise ValueError(f"schedule {name!r} needs {', '.join(missing)}")
    return cls(lr0, **params)
