""":class:`RawData`: a dataset as it was read, before class selection, splitting and scaling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RawData:
    """Rows as stored: ``X`` in its file dtype (uint8 pixels, float64 features), divided by
    ``divisor`` when converted to float64; ``X_test``/``y_test`` hold an official test set when
    the data comes with one (Fashion-MNIST), else None."""

    X: np.ndarray
    y: np.ndarray
    class_names: list[str]
    feature_names: list[str]
    source: str
    image_shape: tuple[int, int] | None = None
    divisor: float = 1.0
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None


def pixel_names(rows: int, cols: int) -> list[str]:
    """Feature names of a ``rows`` x ``cols`` image, row by row: pixel_0_0, pixel_0_1, ..."""
    return [f"pixel_{r}_{c}" for r in range(rows) for c in range(cols)]
