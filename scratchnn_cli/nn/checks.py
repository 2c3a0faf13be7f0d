"""The checks every hyper-parameter of the maths goes through: one definition of "a number".

A bool is not a number here (``lr=True`` is refused, not read as 1.0), nor is NaN or infinity.
Each check returns the value as a Python float or int, so float32 arrays stay float32.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np


def number(name: str, value: Any) -> float:
    """A finite real number (not a bool); a 0-d array (as read back from a .npz) is one too."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return value


def positive(name: str, value: Any) -> float:
    """A number > 0."""
    value = number(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value}")
    return value


def non_negative(name: str, value: Any) -> float:
    """A number >= 0."""
    value = number(name, value)
    if value < 0:
        raise ValueError(f"{name} must be a number >= 0, got {value}")
    return value


def decay_rate(name: str, value: Any) -> float:
    """A number in [0, 1): the factor a running average keeps per step."""
    value = number(name, value)
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return value


def factor(name: str, value: Any) -> float:
    """A number in (0, 1]: a multiplier that shrinks."""
    value = positive(name, value)
    if value > 1:
        raise ValueError(f"{name} must be in (0, 1], got {value}")
    return value


def count(name: str, value: Any, minimum: int) -> int:
    """A whole number >= ``minimum`` (not a bool, not a float)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)
