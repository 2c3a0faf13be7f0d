"""Index-level splitting: which rows go to train, val and test (public: cross-validation and
other sweeps reuse these functions).

Everything works on row indices and labels only, never on the feature arrays. Sizes are
``fraction * n`` rounded half up; each part is stratified by label when every class has enough
rows, else drawn uniformly. Randomness comes only from the generator or seed passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from scratchnn_cli.errors import DataError

Fractions = tuple[float, float, float]


def count_for(fraction: float, n: int) -> int:
    """``fraction * n`` rounded half up (with a little slack for float noise): 0.25 of 10 is 3."""
    return int(math.floor(fraction * n + 0.5 + 1e-9))


def format_split(fractions: Sequence[float]) -> str:
    """``(0.5, 0.25, 0.25)``: fractions as they appear in messages."""
    return "(" + ", ".join(f"{f:g}" for f in fractions) + ")"


def split_indices(
    y: np.ndarray,
    fractions: Fractions,
    rng_or_seed: np.random.Generator | int,
    *,
    n_test_set: int | None = None,
    name: str = "the data",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices ``(train, val, test)`` partitioning ``range(len(y))`` by ``fractions``
    (train, val, test; they sum to 1).

    The test rows are taken first, then val from the rest, each with :func:`stratified_take`;
    the two random states for those draws come from ``rng_or_seed`` (a Generator, which advances
    by one ``integers(2**32, size=2)`` call, or an int seed for ``np.random.default_rng``).

    ``n_test_set``: the data has an official test set of that many rows, kept apart. Then no
    test rows are taken from ``y``: val is ``fractions[1] / (fractions[0] + fractions[1])`` of
    it, ``fractions[2]`` is ignored, and ``test`` is ``arange(n_test_set)`` (indices into the
    official test set). A split that would leave a part with a positive fraction empty raises
    one :class:`DataError` line starting with ``name``.
    """
    f_train, f_val, f_test = _checked(fractions)
    if isinstance(rng_or_seed, int | np.integer):
        rng = np.random.default_rng(int(rng_or_seed))
    else:
        rng = rng_or_seed
    states = [int(s) for s in rng.integers(2**32, size=2)]
    y = np.asarray(y)
    n = len(y)
    if n_test_set is not None:
        n_test, n_val = 0, count_for(f_val / (f_train + f_val), n)
        wanted = {"train": f_train, "val": f_val}
    else:
        n_test, n_val = count_for(f_test, n), count_for(f_val, n)
        wanted = {"train": f_train, "val": f_val, "test": f_test}
    sizes = {"train": n - n_test - n_val, "val": n_val, "test": n_test}
    empty = [part for part, fraction in wanted.items() if fraction > 0 and sizes[part] < 1]
    if empty:
        raise DataError(
            f"{name}: {n} samples are too few for the split {format_split(fractions)}: "
            f"the {' and '.join(empty)} split{'s' if len(empty) > 1 else ''} would be empty"
        )

    rest, test = stratified_take(np.arange(n), y, n_test, states[0])
    train, val = stratified_take(rest, y, n_val, states[1])
    if n_test_set is not None:
        test = np.arange(n_test_set)
    return train, val, test


def stratified_take(
    indices: np.ndarray, y: np.ndarray, n_take: int, rng_or_seed: np.random.Generator | int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` (rows of ``y``) into ``(rest, taken)`` with ``len(taken) == n_take``.

    Stratified by ``y[indices]`` (scikit-learn's ``train_test_split``) when every class present
    has at least 2 rows and both parts can hold one row of each class; uniformly at random
    otherwise. ``rng_or_seed``: an int is the ``random_state`` itself; a Generator gives one
    ``integers(2**32)`` draw. ``n_take == 0`` returns ``(indices, empty)`` and draws nothing;
    ``n_take`` must leave at least one row in ``rest`` (ValueError otherwise).
    """
    from sklearn.model_selection import train_test_split

    indices = np.asarray(indices)
    if n_take == 0:
        return indices, indices[:0]
    if not 0 < n_take < len(indices):
        raise ValueError(f"n_take={n_take}: take 0 to {len(indices) - 1} of {len(indices)} rows")
    if isinstance(rng_or_seed, int | np.integer):
        state = int(rng_or_seed)
    else:
        state = int(rng_or_seed.integers(2**32))
    labels = np.asarray(y)[indices]
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    k = len(counts)
    stratify = labels if counts.min() >= 2 and n_take >= k and len(indices) - n_take >= k else None
    rest, taken = train_test_split(indices, test_size=n_take, random_state=state, stratify=stratify)
    return rest, taken


def kfold_indices(y: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` pairs (train, held out) of positions into ``y``: scikit-learn's
    ``StratifiedKFold(folds, shuffle=True, random_state=seed)``; the held-out parts are disjoint
    and cover ``range(len(y))``. ValueError when a class has fewer than ``folds`` rows."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    smallest = int(np.unique(y, return_counts=True)[1].min()) if len(y) else 0
    if smallest < folds:
        raise ValueError(
            f"{folds} folds need at least {folds} rows of every class "
            f"(the smallest class of train + val has {smallest})"
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros((len(y), 1)), y))


def _checked(fractions: Sequence[float]) -> Fractions:
    if len(fractions) != 3:
        raise ValueError(f"fractions must be (train, val, test), got {fractions!r}")
    f_train, f_val, f_test = (float(f) for f in fractions)
    if (
        min(f_train, f_val, f_test) < 0
        or f_train <= 0
        or not math.isclose(f_train + f_val + f_test, 1.0, abs_tol=1e-6)
    ):
        raise ValueError(
            f"fractions {format_split(fractions)} must be >= 0, with train > 0, summing to 1"
        )
    return f_train, f_val, f_test
