"""``data.scale``: feature scaling fitted on the training rows and applied to every split.

``standard`` is scikit-learn's ``StandardScaler`` ((x - mean) / std), ``minmax`` its
``MinMaxScaler`` ((x - min) / (max - min), so the training rows span [0, 1]); ``none`` leaves the
data as it is. Statistics come from the training split only, so val and test are scaled with the
training mean / std (or min / range) and may leave [0, 1].

Constant columns (one value on all training rows, e.g. the always-black border pixels of an image
dataset) have std 0 / range 0; scikit-learn then divides by 1 instead, so they become exactly 0 in
train and ``x - mean`` (``x - min``) in val and test: never NaN or inf. The fit is deterministic,
so rebuilding a dataset from the same config and seed gives the same scaled arrays.

Features too large for the arithmetic (|x| beyond ~1e154 overflows float64 when squared for the
variance; a range max - min beyond ~1.8e308 overflows too) give statistics that are not finite:
numpy's RuntimeWarnings are silenced here, and :meth:`Scaling.unusable_columns` names those
columns, so the caller refuses them in one line rather than training on NaN or unscaled values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

ScaleMethod = Literal["none", "standard", "minmax"]
SCALE_METHODS: tuple[str, ...] = get_args(ScaleMethod)


@dataclass(frozen=True, eq=False)
class Scaling:
    """A fitted scaling: ``method``, the fitted scikit-learn scaler (None for ``none``), how many
    training rows it was fitted on and which columns were constant on them."""

    method: str = "none"
    scaler: Any = None
    n_samples: int = 0
    constant_features: tuple[int, ...] = ()

    def apply(self, X: np.ndarray) -> np.ndarray:
        """``X`` (float64, any number of rows) scaled with the training statistics; a new
        array, except for ``none``, which returns ``X`` itself."""
        if self.scaler is None:
            return X
        if len(X) == 0:  # scikit-learn refuses empty arrays; an empty split stays empty
            return np.array(X, dtype=np.float64, order="C")
        with np.errstate(all="ignore"):  # an overflow is found by the caller, by column
            return np.ascontiguousarray(self.scaler.transform(X), dtype=np.float64)

    def inverse(self, X: np.ndarray) -> np.ndarray:
        """Undo :meth:`apply`: scaled rows back in the units of the unscaled data."""
        if self.scaler is None or len(X) == 0:
            return np.array(X, dtype=np.float64, order="C")
        with np.errstate(all="ignore"):
            return np.ascontiguousarray(self.scaler.inverse_transform(X), dtype=np.float64)

    def unusable_columns(self) -> list[int]:
        """The columns whose fitted statistics are not finite (mean / variance for
        ``standard``, min / range for ``minmax``): their values overflowed float64 in the fit,
        and scaling them would give NaN, or leave them unscaled. Empty for ``none``."""
        if self.scaler is None:
            return []
        if self.method == "standard":
            statistics = (self.scaler.mean_, self.scaler.var_)
        else:
            statistics = (self.scaler.data_min_, self.scaler.data_range_)
        finite = np.logical_and.reduce([np.isfinite(s) for s in statistics])
        return [int(i) for i in np.flatnonzero(~finite)]

    def describe(self) -> dict[str, Any]:
        """What run.json records under ``data.scale``.

        ``{"method": "none"}``, or for ``standard`` / ``minmax``: ``method``, ``estimator`` (the
        scikit-learn class), ``fitted_on`` ("train"), ``n_samples``, ``n_features``,
        ``constant_features`` (column indices) and per-feature statistics summarised as
        ``{"min", "mean", "max"}`` over the columns: ``mean`` and ``std`` (standard) or ``min``
        and ``range`` (minmax), std and range being 0 for the constant columns.
        """
        if self.scaler is None:
            return {"method": self.method}
        record: dict[str, Any] = {
            "method": self.method,
            "estimator": f"sklearn.preprocessing.{type(self.scaler).__name__}",
            "fitted_on": "train",
            "n_samples": self.n_samples,
            "n_features": int(self.scaler.n_features_in_),
            "constant_features": list(self.constant_features),
        }
        if self.method == "standard":
            record["mean"] = _statistics(self.scaler.mean_)
            record["std"] = _statistics(np.sqrt(self.scaler.var_))
        else:
            record["min"] = _statistics(self.scaler.data_min_)
            record["range"] = _statistics(self.scaler.data_range_)
        return record


NO_SCALING = Scaling()


def fit_scaling(method: str, X_train: np.ndarray) -> Scaling:
    """Fit ``method`` ("none", "standard" or "minmax") on the training rows ``X_train``
    (float64, at least one row)."""
    if method not in SCALE_METHODS:
        raise ValueError(f"unknown scaling {method!r}: use one of {', '.join(SCALE_METHODS)}")
    if method == "none":
        return NO_SCALING
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    scaler = StandardScaler() if method == "standard" else MinMaxScaler()
    with np.errstate(all="ignore"):  # overflows: reported by Scaling.unusable_columns, by name
        scaler.fit(X_train)
        constant = np.flatnonzero(np.ptp(X_train, axis=0) == 0)
    return Scaling(method, scaler, int(len(X_train)), tuple(int(i) for i in constant))


def nonfinite_columns(X: np.ndarray) -> list[int]:
    """The columns of ``X`` holding a NaN or an infinity (none for an empty ``X``)."""
    finite = np.isfinite(X).all(axis=0)
    return [int(i) for i in np.flatnonzero(~finite)]


def _statistics(values: np.ndarray) -> dict[str, float]:
    return {
        "min": float(np.min(values)),
        "mean": float(np.mean(values)),
        "max": float(np.max(values)),
    }
