""":class:`Dataset` and :func:`load_dataset`: a config's data, loaded, filtered and split.

Randomness comes only from the stream ``Stream.DATA_SPLIT`` (streams.py), so
the same config and seed always give the same arrays and the same fingerprint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import DTypeLike

from scratchnn_cli.data import builtin
from scratchnn_cli.data.classes import check_class_sizes, resolve_classes, select_classes
from scratchnn_cli.data.csv import read_csv
from scratchnn_cli.data.fashion_mnist import FASHION_MNIST_CLASSES, fashion_mnist_raw
from scratchnn_cli.data.raw import RawData
from scratchnn_cli.data.scaling import NO_SCALING, Scaling, fit_scaling, nonfinite_columns
from scratchnn_cli.data.splits import format_split, kfold_indices, split_indices
from scratchnn_cli.errors import DataError
from scratchnn_cli.streams import Stream, stream

if TYPE_CHECKING:  # data/ uses the spec's data section only as a type: it imports no models
    from scratchnn_cli.config import DataConfig

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled dataset, already split and scaled; the arrays are read-only.

    ``fingerprint`` identifies the data (see :func:`load_dataset`); ``scaling`` is the fitted
    ``data.scale`` (``scaling.describe()`` is what run.json records).
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    feature_names: list[str]
    source: str
    fingerprint: str
    image_shape: tuple[int, ...] | None = None  # (H, W), or (H, W, C) with C > 1 channels
    scaling: Scaling = NO_SCALING

    def __post_init__(self) -> None:
        for array in self._arrays():
            array.setflags(write=False)

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return (self.X_train, self.y_train, self.X_val, self.y_val, self.X_test, self.y_test)

    @property
    def n_features(self) -> int:
        """Number of input features (columns of X)."""
        return int(self.X_train.shape[1])

    @property
    def n_classes(self) -> int:
        """Number of classes; labels are 0 .. n_classes - 1."""
        return len(self.class_names)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(X, y)`` of the split called ``name``: "train", "val" or "test"."""
        if name not in SPLIT_NAMES:
            raise ValueError(f"unknown split {name!r}: use one of {', '.join(SPLIT_NAMES)}")
        return getattr(self, f"X_{name}"), getattr(self, f"y_{name}")


@dataclass(frozen=True)
class _Builtin:
    load: Callable[[], RawData]
    class_names: Sequence[str]


_BUILTINS = {
    "blobs400": _Builtin(builtin.blobs400, builtin.BLOBS400_CLASSES),
    "circles500": _Builtin(builtin.circles500, builtin.CIRCLES500_CLASSES),
    "digits": _Builtin(builtin.digits, builtin.DIGITS_CLASSES),
    "fashion-mnist": _Builtin(fashion_mnist_raw, FASHION_MNIST_CLASSES),
}


def load_dataset(cfg: DataConfig, seed: int, dtype: DTypeLike = np.float64) -> Dataset:
    """Load ``cfg.dataset``, keep ``cfg.classes``, split by ``cfg.split``, subsample train,
    scale by ``cfg.scale`` (fitted on the training rows) and hold X in ``dtype``. The split,
    folds and subsample are drawn from ``cfg.seed`` when set, else from ``seed`` (the run's).

    ``dtype`` (float64 or float32) is the dtype of the three X arrays; labels are always int64.
    float32 arrays are the float64 ones cast. The fingerprint is computed on the float64 arrays
    after scaling and before that cast, so it identifies the data a run saw whatever its dtype.
    The classes of a built-in are checked before any file is read or downloaded. Problems are
    one :class:`DataError` line each.
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.float64, np.float32):
        raise ValueError(f"dtype must be float64 or float32, not {dtype}")
    if cfg.seed is not None:  # data.seed: the split's own seed
        seed = cfg.seed
    raw = _with_image_shape(_load_raw(cfg), cfg)
    check_class_sizes(raw, cfg.dataset)

    rng = stream(seed, Stream.DATA_SPLIT)
    n_test_set = None if raw.y_test is None else len(raw.y_test)
    idx_train, idx_val, idx_test = split_indices(
        raw.y, cfg.split, rng, n_test_set=n_test_set, name=cfg.dataset
    )
    if cfg.cv is not None:  # a fold of train + val; the test split stays out (empty)
        idx_train, idx_val, idx_test = (
            *cv_fold(raw.y, idx_train, idx_val, cfg, seed),
            idx_test[:0],
        )
    if cfg.train_size is not None:
        idx_train = _subsample(idx_train, cfg.train_size, rng, cfg)

    X_test_pool = raw.X if raw.X_test is None else raw.X_test
    y_test_pool = raw.y if raw.y_test is None else raw.y_test
    X_train = _as_float(raw.X[idx_train], raw.divisor)
    scaling = fit_scaling(cfg.scale, X_train)
    _check_scaling_fits(scaling, X_train, raw.feature_names, cfg)
    X_parts = [
        scaling.apply(X)
        for X in (
            X_train,
            _as_float(raw.X[idx_val], raw.divisor),
            _as_float(X_test_pool[idx_test], raw.divisor),
        )
    ]
    if scaling.scaler is not None:
        _check_scaled_finite(X_parts, raw.feature_names, cfg)
    y_parts = [
        raw.y[idx_train].astype(np.int64),
        raw.y[idx_val].astype(np.int64),
        y_test_pool[idx_test].astype(np.int64),
    ]
    arrays = [a for pair in zip(X_parts, y_parts, strict=True) for a in pair]
    data_fingerprint = fingerprint(arrays)  # of the float64 arrays, whatever ``dtype`` is
    if dtype != np.float64:
        arrays[0::2] = _cast(X_parts, dtype, raw.feature_names, cfg)
    return Dataset(
        cfg.dataset,
        *arrays,
        class_names=list(raw.class_names),
        feature_names=list(raw.feature_names),
        source=raw.source,
        fingerprint=data_fingerprint,
        image_shape=raw.image_shape,
        scaling=scaling,
    )


def _check_scaling_fits(
    scaling: Scaling, X_train: np.ndarray, feature_names: Sequence[str], cfg: DataConfig
) -> None:
    """Refuse columns whose values are too large for ``data.scale``'s statistics (they overflow
    float64: the scaled column would be NaN or left unscaled, and training would "diverge")."""
    bad = scaling.unusable_columns()
    if bad:
        largest = float(np.max(np.abs(X_train[:, bad])))
        raise DataError(
            f"{cfg.dataset}: data.scale: {cfg.scale} cannot scale {_columns(bad, feature_names)}: "
            f"values up to {largest:.3g} in magnitude overflow float64 arithmetic; divide by a "
            "power of ten in the file"
        )


def _check_scaled_finite(
    X_parts: Sequence[np.ndarray], feature_names: Sequence[str], cfg: DataConfig
) -> None:
    """Refuse a split that scaling made infinite or NaN: a val or test value far outside the
    spread of the training rows (divided by a tiny std or range)."""
    for split, X in zip(SPLIT_NAMES, X_parts, strict=True):
        bad = nonfinite_columns(X)
        if bad:
            raise DataError(
                f"{cfg.dataset}: data.scale: {cfg.scale} makes {_columns(bad, feature_names)} "
                f"of the {split} split infinite (values far outside the training rows' spread); "
                "rescale in the file or use another data.scale"
            )


def _cast(
    X_parts: Sequence[np.ndarray], dtype: np.dtype, feature_names: Sequence[str], cfg: DataConfig
) -> list[np.ndarray]:
    """The X arrays as ``dtype`` (float32), refusing a column whose values it cannot hold (they
    would become infinite: float32 stops at ~3.4e38)."""
    with np.errstate(over="ignore"):  # an overflow is refused below, by column
        cast = [X.astype(dtype) for X in X_parts]
    for X, X_cast in zip(X_parts, cast, strict=True):
        bad = nonfinite_columns(X_cast)
        if bad:
            largest = float(np.max(np.abs(X[:, bad])))
            raise DataError(
                f"{cfg.dataset}: model.dtype {dtype} cannot hold {_columns(bad, feature_names)} "
                f"(values up to {largest:.3g} in magnitude, {dtype} holds up to "
                f"{float(np.finfo(dtype).max):.3g}): use model.dtype: float64 or data.scale, "
                "or rescale in the file"
            )
    return cast


def _columns(indices: Sequence[int], feature_names: Sequence[str]) -> str:
    """'column 'a'' or 'columns 'a', 'b', 'c' and 4 more': at most three names in a message."""
    names = [repr(feature_names[i]) for i in indices[:3]]
    more = f" and {len(indices) - 3} more" if len(indices) > 3 else ""
    return f"column{'s' if len(indices) > 1 else ''} {', '.join(names)}{more}"


def cv_fold(
    y: np.ndarray, idx_train: np.ndarray, idx_val: np.ndarray, cfg: DataConfig, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``data.cv``: the rows (train, held out) of fold ``cfg.cv.fold`` of train + val, pooled
    and sorted, by ``kfold_indices`` (its seed from the stream ``Stream.CV_FOLDS``); ``folds: 1``
    keeps the split's own train and val."""
    if cfg.cv.folds == 1:
        return idx_train, idx_val
    pool = np.sort(np.concatenate([idx_train, idx_val]))
    state = int(stream(seed, Stream.CV_FOLDS).integers(2**31))
    try:
        folds = kfold_indices(y[pool], cfg.cv.folds, state)
    except ValueError as exc:
        raise DataError(f"data.cv: {cfg.dataset}: {exc}") from None
    train, held_out = folds[cfg.cv.fold]
    return pool[train], pool[held_out]


def _with_image_shape(raw: RawData, cfg: DataConfig) -> RawData:
    """A CSV of pixels as images: ``data.image_shape`` [C, H, W] (or [H, W]) in the order the
    columns are written (channel by channel, as PyTorch stores them); the rows are reordered
    to channels last (H, W, C), the layout the convolutional layers use."""
    if cfg.image_shape is None:
        return raw
    shape = tuple(cfg.image_shape)
    C, H, W = shape if len(shape) == 3 else (1, *shape)
    if raw.image_shape is not None:  # a built-in image dataset: the shape is known
        if (C, H, W) != (1, *raw.image_shape):
            raise DataError(
                f"data.image_shape: {cfg.dataset} holds 1 x {raw.image_shape[0]} x "
                f"{raw.image_shape[1]} images, not {' x '.join(map(str, shape))}"
            )
        return raw
    n = raw.X.shape[1]
    if C * H * W != n:
        raise DataError(
            f"data.image_shape: {list(shape)} is {C * H * W} pixels, but {cfg.dataset} has {n} "
            "feature columns"
        )
    if C == 1:
        return replace(raw, image_shape=(H, W))
    order = np.arange(n).reshape(C, H, W).transpose(1, 2, 0).reshape(-1)  # CHW -> HWC
    return replace(
        raw,
        X=raw.X[:, order],
        feature_names=[raw.feature_names[i] for i in order],
        image_shape=(H, W, C),
    )


def _load_raw(cfg: DataConfig) -> RawData:
    """The rows of ``cfg.dataset`` restricted to ``cfg.classes`` (all classes when None).

    A built-in's class names are known up front, so its ``cfg.classes`` are checked before any
    file is read or downloaded; a CSV's are checked once it is read.
    """
    known = _BUILTINS.get(cfg.dataset)
    if known is None:
        raw = read_csv(Path(cfg.dataset), cfg.target)
        if cfg.classes is None:
            return raw
        return select_classes(raw, resolve_classes(raw.class_names, cfg.classes, cfg.dataset))
    if cfg.classes is None:
        return known.load()
    chosen = resolve_classes(known.class_names, cfg.classes, cfg.dataset)
    raw = known.load()
    if list(raw.class_names) != list(known.class_names):  # the two lists must never drift apart
        raise RuntimeError(f"{cfg.dataset}: loaded classes differ from the known class names")
    return select_classes(raw, chosen)


def _subsample(
    idx_train: np.ndarray, size: int, rng: np.random.Generator, cfg: DataConfig
) -> np.ndarray:
    """``size`` of the training rows, drawn without replacement (``data.train_size``)."""
    if size > len(idx_train):
        raise DataError(
            f"data.train_size={size} is larger than the {len(idx_train)} "
            f"training samples of {cfg.dataset} (after the split {format_split(cfg.split)})"
        )
    return idx_train[rng.choice(len(idx_train), size=size, replace=False)]


def _as_float(X: np.ndarray, divisor: float) -> np.ndarray:
    out = np.array(X, dtype=np.float64, order="C")
    if divisor != 1.0:
        out /= divisor
    return out


def fingerprint(arrays: Sequence[np.ndarray]) -> str:
    """``sha256:<hex>`` over each array's dtype string, shape and ";" then its C-order bytes,
    in the given order (X_train, y_train, X_val, y_val, X_test, y_test for a Dataset)."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(array.data)
    return f"sha256:{digest.hexdigest()}"
