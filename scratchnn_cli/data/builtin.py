"""The built-in datasets generated or shipped by scikit-learn: blobs400, circles500, digits.

Each loader returns the same :class:`RawData` every time (fixed ``random_state``): it is made
once per process and handed out read-only (a sweep's worker loads it for every sub-run; making
it through scikit-learn's validated functions takes ~10 ms). The class names are module
constants so that ``data.classes`` can be checked before anything is loaded.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from scratchnn_cli.data.raw import RawData, pixel_names

BLOBS400_CLASSES = ("0", "1")
CIRCLES500_CLASSES = ("0", "1")
DIGITS_CLASSES = tuple(str(d) for d in range(10))

_BLOBS_CENTERS = [[2.14, 3.59, 0.08], [1.49, 0.73, 0.46]]


def _made_once(make: Callable[[], RawData]) -> Callable[[], RawData]:
    """``make``, called once; its arrays are then read-only (every caller copies what it uses)."""

    @functools.cache
    def once() -> RawData:
        raw = make()
        raw.X.setflags(write=False)
        raw.y.setflags(write=False)
        return raw

    return functools.wraps(make)(once)


@_made_once
def blobs400() -> RawData:
    """400 points in 3-D, two Gaussian blobs of 200 (sklearn ``make_blobs``)."""
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=400, centers=_BLOBS_CENTERS, cluster_std=0.7, random_state=400)
    return RawData(
        X=X,
        y=y.astype(np.int64),
        class_names=list(BLOBS400_CLASSES),
        feature_names=["X1", "X2", "X3"],
        source=(
            f"built-in: sklearn make_blobs(n_samples=400, centers={_BLOBS_CENTERS}, "
            "cluster_std=0.7, random_state=400)"
        ),
    )


@_made_once
def circles500() -> RawData:
    """500 points in 2-D, two noisy concentric circles of 250 (sklearn ``make_circles``)."""
    from sklearn.datasets import make_circles

    X, y = make_circles(n_samples=500, noise=0.08, factor=0.5, random_state=500)
    return RawData(
        X=X,
        y=y.astype(np.int64),
        class_names=list(CIRCLES500_CLASSES),
        feature_names=["X0", "X1"],
        source="built-in: sklearn make_circles(n_samples=500, noise=0.08, factor=0.5, "
        "random_state=500)",
    )


@_made_once
def digits() -> RawData:
    """sklearn's 1797 8x8 handwritten digits, pixels 0-16 (divided by 16 when converted)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return RawData(
        X=bunch.data,
        y=bunch.target.astype(np.int64),
        class_names=list(DIGITS_CLASSES),
        feature_names=pixel_names(8, 8),
        source="built-in: sklearn load_digits() (1797 8x8 images, pixels / 16)",
        image_shape=(8, 8),
        divisor=16.0,
    )
