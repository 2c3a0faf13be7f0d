"""Datasets: the built-ins, CSV files and Fashion-MNIST, split into train / val / test.

Every problem a user can cause (a bad CSV, a missing download, an unknown class) is reported as
one :class:`DataError` line. Randomness comes only from ``np.random.default_rng([seed, 1])``
(the project's data stream), so the same config and seed always give the same arrays.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import math
import os
import re
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scratchnn_cli.config import DataConfig
from scratchnn_cli.errors import DataError, one_line

if TYPE_CHECKING:  # pandas and scikit-learn are imported where used: they are slow to import
    import pandas as pd

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
#: Official sha256 of the four .gz files; a download must match before it is kept.
FASHION_MNIST_SHA256 = dict(
    zip(
        FASHION_MNIST_FILES,
        (
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        ),
        strict=True,
    )
)
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DOWNLOAD_TIMEOUT_S = 30

_BLOBS_CENTERS = [[2.14, 3.59, 0.08], [1.49, 0.73, 0.46]]
_SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled dataset, already split; the arrays are read-only."""

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
    image_shape: tuple[int, int] | None = None

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
        if name not in _SPLIT_NAMES:
            raise ValueError(f"unknown split {name!r}: use one of {', '.join(_SPLIT_NAMES)}")
        return getattr(self, f"X_{name}"), getattr(self, f"y_{name}")


@dataclass(frozen=True)
class _Raw:
    """Data before splitting: X in its stored dtype (divide by ``scale`` for float64)."""

    X: np.ndarray
    y: np.ndarray
    class_names: list[str]
    feature_names: list[str]
    source: str
    image_shape: tuple[int, int] | None = None
    scale: float = 1.0
    X_test: np.ndarray | None = None  # an official test set, when the data has one
    y_test: np.ndarray | None = None


# --------------------------------------------------------------------------- public entry point


def load_dataset(cfg: DataConfig, seed: int) -> Dataset:
    """Load ``cfg.dataset``, keep ``cfg.classes``, split by ``cfg.split``, subsample train."""
    raw = _load_raw(cfg)
    if cfg.classes is not None:
        raw = _select_classes(raw, cfg.classes, cfg.dataset)
    _check_class_sizes(raw, cfg.dataset)

    rng = np.random.default_rng([seed, 1])
    idx_train, idx_val, idx_test = _split_indices(raw, cfg.split, rng, cfg.dataset)
    if cfg.train_size is not None:
        if cfg.train_size > len(idx_train):
            raise DataError(
                f"data.train_size={cfg.train_size} is larger than the {len(idx_train)} "
                f"training samples of {cfg.dataset} (after the split {_fmt_split(cfg.split)})"
            )
        idx_train = idx_train[rng.choice(len(idx_train), size=cfg.train_size, replace=False)]

    X_test_pool = raw.X if raw.X_test is None else raw.X_test
    y_test_pool = raw.y if raw.y_test is None else raw.y_test
    arrays = (
        _as_float(raw.X[idx_train], raw.scale),
        raw.y[idx_train].astype(np.int64),
        _as_float(raw.X[idx_val], raw.scale),
        raw.y[idx_val].astype(np.int64),
        _as_float(X_test_pool[idx_test], raw.scale),
        y_test_pool[idx_test].astype(np.int64),
    )
    return Dataset(
        cfg.dataset,
        *arrays,
        class_names=list(raw.class_names),
        feature_names=list(raw.feature_names),
        source=raw.source,
        fingerprint=_fingerprint(arrays),
        image_shape=raw.image_shape,
    )


def _load_raw(cfg: DataConfig) -> _Raw:
    loaders = {
        "blobs400": _blobs400,
        "circles500": _circles500,
        "digits": _digits,
        "fashion-mnist": _fashion_mnist_raw,
    }
    if cfg.dataset in loaders:
        return loaders[cfg.dataset]()
    return _read_csv(Path(cfg.dataset), cfg.target)


# --------------------------------------------------------------------------- built-in datasets


def _blobs400() -> _Raw:
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=400, centers=_BLOBS_CENTERS, cluster_std=0.7, random_state=400)
    return _Raw(
        X=X,
        y=y.astype(np.int64),
        class_names=["0", "1"],
        feature_names=["X1", "X2", "X3"],
        source=(
            f"built-in: sklearn make_blobs(n_samples=400, centers={_BLOBS_CENTERS}, "
            "cluster_std=0.7, random_state=400)"
        ),
    )


def _circles500() -> _Raw:
    from sklearn.datasets import make_circles

    X, y = make_circles(n_samples=500, noise=0.08, factor=0.5, random_state=500)
    return _Raw(
        X=X,
        y=y.astype(np.int64),
        class_names=["0", "1"],
        feature_names=["X0", "X1"],
        source="built-in: sklearn make_circles(n_samples=500, noise=0.08, factor=0.5, "
        "random_state=500)",
    )


def _digits() -> _Raw:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return _Raw(
        X=digits.data,
        y=digits.target.astype(np.int64),
        class_names=[str(d) for d in range(10)],
        feature_names=_pixel_names(8, 8),
        source="built-in: sklearn load_digits() (1797 8x8 images, pixels / 16)",
        image_shape=(8, 8),
        scale=16.0,
    )


def _fashion_mnist_raw() -> _Raw:
    folder = _fashion_mnist_dir(download=True)
    X_train, y_train, X_test, y_test = _read_fashion_mnist(folder)
    return _Raw(
        X=X_train.reshape(len(X_train), -1),
        y=y_train.astype(np.int64),
        X_test=X_test.reshape(len(X_test), -1),
        y_test=y_test.astype(np.int64),
        class_names=list(FASHION_MNIST_CLASSES),
        feature_names=_pixel_names(28, 28),
        source=f"Fashion-MNIST IDX files in {folder} (pixels / 255)",
        image_shape=(28, 28),
        scale=255.0,
    )


def _pixel_names(rows: int, cols: int) -> list[str]:
    return [f"pixel_{r}_{c}" for r in range(rows) for c in range(cols)]


# --------------------------------------------------------------------------- CSV files


def _read_csv(path: Path, target: str | None) -> _Raw:
    """Read a CSV: numeric feature columns plus one label column (``target``, default last)."""
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the CSV file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: cannot parse the CSV file: {one_line(exc)}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the CSV file: {one_line(exc)}") from None

    columns = [str(c) for c in df.columns]
    df.columns = columns
    if len(columns) < 2:
        raise DataError(
            f"{path}: needs at least two columns (features and a label), found {len(columns)}: "
            f"{', '.join(columns)}"
        )
    if len(df) == 0:
        raise DataError(f"{path}: the CSV file has a header but no data rows")
    target = columns[-1] if target is None else target
    if target not in columns:
        raise DataError(
            f"{path}: target column '{target}' not found; columns are: {', '.join(columns)}"
        )
    features = [c for c in columns if c != target]

    missing = df.isna()
    if missing.to_numpy().any():
        parts = []
        for column in columns:
            rows = np.flatnonzero(missing[column].to_numpy())
            if len(rows):
                plural = "s" if len(rows) > 1 else ""
                parts.append(f"'{column}' ({len(rows)} row{plural}, first on line {rows[0] + 2})")
        raise DataError(f"{path}: missing values in column {', '.join(parts)}")

    non_numeric = [c for c in features if not pd.api.types.is_numeric_dtype(df[c])]
    if non_numeric:
        parts = [f"'{c}' (e.g. {_first_non_number(df[c])})" for c in non_numeric]
        raise DataError(
            f"{path}: non-numeric feature column{'s' if len(parts) > 1 else ''} "
            f"{', '.join(parts)}; features must be numbers (the label column is '{target}', "
            "set data.target to choose another)"
        )
    X = df[features].to_numpy(dtype=np.float64)
    if not np.isfinite(X).all():
        bad = [c for c, ok in zip(features, np.isfinite(X).all(axis=0), strict=True) if not ok]
        raise DataError(f"{path}: infinite values in column {', '.join(map(repr, bad))}")

    y, class_names = _encode_labels(df[target], path)
    if len(class_names) < 2:
        raise DataError(
            f"{path}: label column '{target}' holds a single class ('{class_names[0]}'); "
            "a classifier needs at least two"
        )
    return _Raw(
        X=X,
        y=y,
        class_names=class_names,
        feature_names=features,
        source=f"CSV file {path} (label column '{target}')",
    )


def _encode_labels(column: pd.Series, path: Path) -> tuple[np.ndarray, list[str]]:
    """Labels 0..k-1 and their names: integers in numeric order, text in sorted order."""
    import pandas as pd

    values = column
    if pd.api.types.is_float_dtype(values):
        as_float = values.to_numpy(dtype=np.float64)
        fractional = as_float[~np.isfinite(as_float) | (as_float != np.round(as_float))]
        if len(fractional):
            raise DataError(
                f"{path}: label column '{column.name}' holds non-integer values "
                f"(e.g. {fractional[0]:g}); labels must be integers or text "
                "(set data.target to choose another column)"
            )
        values = values.astype(np.int64)
    elif not pd.api.types.is_integer_dtype(values):
        values = values.astype(str)
    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.int64), [str(u) for u in uniques]


def _first_non_number(column: pd.Series) -> str:
    import pandas as pd

    bad = pd.to_numeric(column, errors="coerce").isna().to_numpy()
    row = int(np.flatnonzero(bad)[0]) if bad.any() else 0
    return f"{str(column.iloc[row])!r} on line {row + 2}"


# --------------------------------------------------------------------------- classes, splitting


def _select_classes(raw: _Raw, wanted: Sequence[str | int], dataset: str) -> _Raw:
    """Keep the listed classes, relabelled 0..k-1 in the order they are listed."""
    names = raw.class_names
    numeric_names = all(re.fullmatch(r"-?\d+", n) for n in names)
    # integer entries: the label value as written in the data, else the label number 0..k-1
    by_value = {int(n) if numeric_names else i: i for i, n in enumerate(names)}
    chosen: list[int] = []
    for entry in wanted:
        text = str(entry)
        if text in names:
            index = names.index(text)
        elif re.fullmatch(r"-?\d+", text.strip()) and int(text) in by_value:
            index = by_value[int(text)]
        else:
            shown = ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")
            numbers = "" if numeric_names else f" (or label numbers 0-{len(names) - 1})"
            raise DataError(
                f"data.classes: unknown class {entry!r} in {dataset}; available: {shown}{numbers}"
            )
        if index in chosen:
            raise DataError(f"data.classes: class '{names[index]}' is listed twice")
        chosen.append(index)

    lookup = np.full(len(names), -1, dtype=np.int64)
    lookup[chosen] = np.arange(len(chosen))
    keep = lookup[raw.y] >= 0
    changes: dict[str, object] = {
        "X": raw.X[keep],
        "y": lookup[raw.y[keep]],
        "class_names": [names[i] for i in chosen],
    }
    if raw.y_test is not None and raw.X_test is not None:
        keep_test = lookup[raw.y_test] >= 0
        changes["X_test"] = raw.X_test[keep_test]
        changes["y_test"] = lookup[raw.y_test[keep_test]]
    return replace(raw, **changes)


def _check_class_sizes(raw: _Raw, dataset: str) -> None:
    counts = np.bincount(raw.y, minlength=len(raw.class_names))
    small = [(name, int(n)) for name, n in zip(raw.class_names, counts, strict=True) if n < 2]
    if small:
        name, n = small[0]
        raise DataError(
            f"{dataset}: class '{name}' has {n} sample{'' if n == 1 else 's'}; "
            "each class needs at least 2"
        )


def _split_indices(
    raw: _Raw, split: tuple[float, float, float], rng: np.random.Generator, dataset: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of train, val and test (test indexes the official test set if any)."""
    f_train, f_val, f_test = split
    states = [int(s) for s in rng.integers(2**32, size=2)]
    n = len(raw.y)
    if raw.y_test is not None:  # official test set: carve val out of the official train
        n_test, n_val = 0, _count(f_val / (f_train + f_val), n)
        wanted = {"train": f_train, "val": f_val}
    else:
        n_test, n_val = _count(f_test, n), _count(f_val, n)
        wanted = {"train": f_train, "val": f_val, "test": f_test}
    sizes = {"train": n - n_test - n_val, "val": n_val, "test": n_test}
    empty = [name for name, fraction in wanted.items() if fraction > 0 and sizes[name] < 1]
    if empty:
        raise DataError(
            f"{dataset}: {n} samples are too few for the split {_fmt_split(split)}: "
            f"the {' and '.join(empty)} split{'s' if len(empty) > 1 else ''} would be empty"
        )

    rest, test = _take(np.arange(n), raw.y, n_test, states[0])
    train, val = _take(rest, raw.y, n_val, states[1])
    if raw.y_test is not None:
        test = np.arange(len(raw.y_test))
    return train, val, test


def _take(
    indices: np.ndarray, y: np.ndarray, n_take: int, state: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (rest, n_take of them), stratified by ``y`` where possible."""
    from sklearn.model_selection import train_test_split

    if n_take == 0:
        return indices, indices[:0]
    labels = y[indices]
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    k = len(counts)
    stratify = labels if counts.min() >= 2 and n_take >= k and len(indices) - n_take >= k else None
    rest, taken = train_test_split(indices, test_size=n_take, random_state=state, stratify=stratify)
    return rest, taken


def _count(fraction: float, n: int) -> int:
    """``fraction * n`` rounded half up (with a little slack for float noise)."""
    return int(math.floor(fraction * n + 0.5 + 1e-9))


def _fmt_split(split: tuple[float, float, float]) -> str:
    return "(" + ", ".join(f"{f:g}" for f in split) + ")"


def _as_float(X: np.ndarray, scale: float) -> np.ndarray:
    out = np.array(X, dtype=np.float64, order="C")
    if scale != 1.0:
        out /= scale
    return out


def _fingerprint(arrays: Sequence[np.ndarray]) -> str:
    """sha256 over each array's dtype, shape and bytes, in the given order."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(array.data)
    return f"sha256:{digest.hexdigest()}"


# --------------------------------------------------------------------------- locations


def data_dir() -> Path | None:
    """``$SCRATCHNN_DATA`` as a path, or None when it is unset or empty."""
    value = os.environ.get("SCRATCHNN_DATA")
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/scratchnn``, or ``~/.cache/scratchnn`` (not created here)."""
    base = os.environ.get("XDG_CACHE_HOME")
    root = Path(base).expanduser() if base else Path.home() / ".cache"
    return root / "scratchnn"


# --------------------------------------------------------------------------- IDX files


_IDX_NDIMS = (1, 3)


def read_idx(path: Path) -> np.ndarray:
    """Decode a gzip'd or plain IDX file of unsigned bytes into a read-only uint8 array."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the IDX file: {one_line(exc)}") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"{path}: corrupt or truncated gzip file ({one_line(exc)}); replace it"
            ) from None
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise DataError(f"{path}: not an IDX file (bad magic number 0x{data[:4].hex()})")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != 0x08:
        raise DataError(
            f"{path}: unsupported IDX data type 0x{dtype_code:02x} (only 0x08, unsigned byte)"
        )
    if ndim not in _IDX_NDIMS:
        raise DataError(f"{path}: IDX file has {ndim} dimensions (expected 1 or 3)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    payload = len(data) - header
    if payload != math.prod(dims):
        raise DataError(
            f"{path}: IDX payload is {payload} bytes but the header's shape {dims} needs "
            f"{math.prod(dims)} (truncated or corrupt file); replace it"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


# --------------------------------------------------------------------------- Fashion-MNIST


def load_fashion_mnist(
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Official Fashion-MNIST as read-only uint8 arrays: X_train (60000, 28, 28), y_train,
    X_test (10000, 28, 28), y_test. Looks in ``$SCRATCHNN_DATA/fashion-mnist/`` then the cache;
    downloads into the cache when absent and ``download`` is true."""
    return _read_fashion_mnist(_fashion_mnist_dir(download))


def _fashion_mnist_dir(download: bool) -> Path:
    """The folder holding all four files, downloading the missing ones into the cache."""
    env = data_dir()
    cache = cache_dir() / "fashion-mnist"
    folders = [cache] if env is None else [env / "fashion-mnist", cache]
    for folder in folders:
        if all((folder / name).is_file() for name in FASHION_MNIST_FILES):
            return folder
    if not download:
        raise DataError(f"Fashion-MNIST not found; {_where_to_put_files()}")
    base = os.environ.get("SCRATCHNN_FASHION_MNIST_URL", FASHION_MNIST_URL)
    for name in FASHION_MNIST_FILES:
        if not (cache / name).is_file():
            url = base.rstrip("/") + "/" + name
            _download(url, cache / name, FASHION_MNIST_SHA256[name])
    return cache


def _where_to_put_files() -> str:
    env = data_dir()
    shown = f" (= {env / 'fashion-mnist'}/)" if env is not None else ""
    return (
        f"put the four files {', '.join(FASHION_MNIST_FILES)} in "
        f"$SCRATCHNN_DATA/fashion-mnist/{shown} or {cache_dir() / 'fashion-mnist'}/"
    )


def _download(url: str, dest: Path, sha256: str) -> None:
    """Fetch ``url`` into a temp file next to ``dest``, check its sha256, rename into place."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    def failed(reason: str) -> DataError:
        return DataError(
            f"could not download Fashion-MNIST file {dest.name} from {url} ({reason}); "
            f"{_where_to_put_files()}"
        )

    tmp: Path | None = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        tmp = Path(tmp_name)
        digest = hashlib.sha256()
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
            progress,
        ):
            size = response.headers.get("Content-Length")
            task = progress.add_task(
                f"Fashion-MNIST {dest.name}", total=int(size) if size else None
            )
            while chunk := response.read(1 << 16):
                out.write(chunk)
                digest.update(chunk)
                progress.advance(task, len(chunk))
        if digest.hexdigest() != sha256:
            raise failed(
                f"checksum mismatch: sha256 {digest.hexdigest()[:16]}..., expected {sha256[:16]}..."
            )
        os.replace(tmp, dest)
    except urllib.error.URLError as exc:
        reason = one_line(exc) if isinstance(exc, urllib.error.HTTPError) else str(exc.reason)
        raise failed(reason) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise failed(one_line(exc)) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _read_fashion_mnist(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode the four files in ``folder`` (cached per folder and file size / mtime)."""
    stamps = []
    for name in FASHION_MNIST_FILES:
        stat = (folder / name).stat()
        stamps.append((stat.st_size, stat.st_mtime_ns))
    return _read_fashion_mnist_cached(str(folder), tuple(stamps))


@functools.lru_cache(maxsize=2)
def _read_fashion_mnist_cached(
    folder: str, stamps: tuple[tuple[int, int], ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    del stamps  # only part of the cache key: a replaced file is read again
    paths = [Path(folder) / name for name in FASHION_MNIST_FILES]
    X_train, y_train, X_test, y_test = (read_idx(p) for p in paths)
    for images, labels, image_path, label_path in (
        (X_train, y_train, paths[0], paths[1]),
        (X_test, y_test, paths[2], paths[3]),
    ):
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DataError(f"{image_path}: expected 28x28 images, found shape {images.shape}")
        if labels.ndim != 1:
            raise DataError(f"{label_path}: expected a 1-D label file, found {labels.shape}")
        if len(images) != len(labels):
            raise DataError(
                f"{label_path}: {len(labels)} labels but {image_path.name} has {len(images)} images"
            )
        if len(labels) and labels.max() > 9:
            raise DataError(f"{label_path}: label {labels.max()} is out of range 0-9")
    return X_train, y_train, X_test, y_test
