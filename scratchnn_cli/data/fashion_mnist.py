"""Fashion-MNIST: where its four IDX files are looked for, the verified download, the decoding.

Files are looked for in ``$SCRATCHNN_DATA/fashion-mnist/`` and then in the cache
(``$XDG_CACHE_HOME/scratchnn/fashion-mnist/``); missing ones are downloaded into the cache from
``$SCRATCHNN_FASHION_MNIST_URL`` (default: the official mirror) and kept only when their sha256
matches :data:`FASHION_MNIST_SHA256`. Decoded arrays are cached in memory per folder.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

import numpy as np

from scratchnn_cli.data.idx import read_idx
from scratchnn_cli.data.raw import RawData, pixel_names
from scratchnn_cli.errors import DataError, one_line

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


# --------------------------------------------------------------------------- loading


def load_fashion_mnist(
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Official Fashion-MNIST as read-only uint8 arrays: X_train (60000, 28, 28), y_train,
    X_test (10000, 28, 28), y_test. Looks in ``$SCRATCHNN_DATA/fashion-mnist/`` then the cache;
    downloads into the cache when absent and ``download`` is true."""
    return _read_fashion_mnist(fashion_mnist_dir(download))


def fashion_mnist_raw() -> RawData:
    """Fashion-MNIST for :func:`load_dataset`: flattened images (pixels / 255 when converted)
    and the official test set kept apart; downloads the files when they are not found."""
    folder = fashion_mnist_dir(download=True)
    X_train, y_train, X_test, y_test = _read_fashion_mnist(folder)
    return RawData(
        X=X_train.reshape(len(X_train), -1),
        y=y_train.astype(np.int64),
        X_test=X_test.reshape(len(X_test), -1),
        y_test=y_test.astype(np.int64),
        class_names=list(FASHION_MNIST_CLASSES),
        feature_names=pixel_names(28, 28),
        source=f"Fashion-MNIST IDX files in {folder} (pixels / 255)",
        image_shape=(28, 28),
        divisor=255.0,
    )


def fashion_mnist_dir(download: bool) -> Path:
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


# --------------------------------------------------------------------------- download


def _download(url: str, dest: Path, sha256: str) -> None:
    """Fetch ``url`` into a temp file next to ``dest``, check its sha256, rename into place."""

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
        with os.fdopen(fd, "wb") as out:
            digest = _fetch(url, out, f"Fashion-MNIST {dest.name}")
        if digest != sha256:
            raise failed(f"checksum mismatch: sha256 {digest[:16]}..., expected {sha256[:16]}...")
        os.replace(tmp, dest)
    except urllib.error.URLError as exc:
        reason = one_line(exc) if isinstance(exc, urllib.error.HTTPError) else str(exc.reason)
        raise failed(reason) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise failed(one_line(exc)) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _fetch(url: str, out: BinaryIO, description: str) -> str:
    """Copy ``url`` into the binary file ``out`` with a progress bar on stderr; returns the
    hex sha256 of the bytes written."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    digest = hashlib.sha256()
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, progress:
        size = response.headers.get("Content-Length")
        task = progress.add_task(description, total=int(size) if size else None)
        while chunk := response.read(1 << 16):
            out.write(chunk)
            digest.update(chunk)
            progress.advance(task, len(chunk))
    return digest.hexdigest()


# --------------------------------------------------------------------------- decoding


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
    _check_pair(X_train, y_train, paths[0], paths[1])
    _check_pair(X_test, y_test, paths[2], paths[3])
    return X_train, y_train, X_test, y_test


def _check_pair(images: np.ndarray, labels: np.ndarray, image_path: Path, label_path: Path) -> None:
    """An image file and its label file must agree: 28x28 images, one label 0-9 per image."""
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
