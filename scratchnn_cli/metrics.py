"""Classification metrics: a network's scores on a split (``score``: what metrics.json and
``scratchnn evaluate`` hold), and the functions of a confusion matrix they use. No I/O.

A confusion matrix here is a square array of counts, rows the true class and columns the
predicted class (``confusion_matrix`` below, which equals scikit-learn's with
``labels=range(k)``, as ``score`` writes it into metrics.json). A nested list of
ints is accepted too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from scratchnn_cli.data import Dataset
    from scratchnn_cli.nn.network import Network

from scratchnn_cli.records import ConfusedPair, Scores

#: How many pairs ``confused_pairs`` returns unless told.
TOP_PAIRS = 5


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int) -> np.ndarray:
    """The (n_classes, n_classes) int64 counts of the (true, predicted) label pairs, rows true
    and columns predicted: scikit-learn's ``confusion_matrix(y_true, y_pred,
    labels=range(n_classes))`` at a fraction of its cost (one ``np.bincount``), a pair with a
    label outside 0 .. n_classes - 1 left out as it does. Labels are integers (or bools)."""
    t, p = np.ravel(y_true), np.ravel(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"{len(t)} true labels but {len(p)} predicted ones")
    for labels in (t, p):
        if len(labels) and not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
            raise ValueError(f"class labels must be integers, not {labels.dtype}")
    t, p = t.astype(np.int64), p.astype(np.int64)
    kept = (t >= 0) & (t < n_classes) & (p >= 0) & (p < n_classes)
    cells = t[kept] * n_classes + p[kept]
    return np.bincount(cells, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def as_confusion_matrix(matrix: Any) -> np.ndarray:
    """``matrix`` as a (k, k) int64 array; ValueError unless it is square, 2-D, of whole
    non-negative counts."""
    mat = np.asarray(matrix)
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
        raise ValueError(f"a confusion matrix must be square (k, k), not of shape {mat.shape}")
    whole = np.issubdtype(mat.dtype, np.integer) or (
        np.issubdtype(mat.dtype, np.floating)
        and bool(np.all(np.isfinite(mat)))
        and bool(np.all(mat == np.round(mat)))
    )
    if not whole:
        raise ValueError("a confusion matrix must hold counts (whole numbers)")
    mat = mat.astype(np.int64)
    if np.any(mat < 0):
        raise ValueError("a confusion matrix cannot hold negative counts")
    return mat


def per_class_accuracy(matrix: Any) -> list[float | None]:
    """Per true class: correct / samples of the class (its recall), in class order; None for a
    class without samples (an all-zero row)."""
    mat = as_confusion_matrix(matrix)
    n = mat.sum(axis=1)
    return [float(mat[c, c] / n[c]) if n[c] else None for c in range(len(mat))]


def confused_pairs(
    matrix: Any, class_names: Sequence[str] | None = None, top: int | None = TOP_PAIRS
) -> list[ConfusedPair]:
    """The off-diagonal cells with the most errors, at most ``top`` of them (None: all).

    Each is a ``ConfusedPair`` (true name, predicted name, count, share_of_true), where
    ``share_of_true`` is count / samples of the true class. Cells with no errors are left out.
    Sorted by count (most first), then by true name, then by predicted name. ``class_names``
    defaults to "0", "1", ...
    """
    mat = as_confusion_matrix(matrix)
    names = _names(class_names, len(mat))
    if top is not None and top < 0:
        raise ValueError(f"top must be >= 0 or None, not {top}")
    n = mat.sum(axis=1)
    cells = [
        (int(mat[t, p]), names[t], names[p], t)
        for t in range(len(mat))
        for p in range(len(mat))
        if t != p and mat[t, p] > 0
    ]
    cells.sort(key=lambda cell: (-cell[0], cell[1], cell[2]))
    return [
        ConfusedPair(t_name, p_name, count, count / int(n[t]))
        for count, t_name, p_name, t in cells[:top]
    ]


def pair_confusion(matrix: Any, a: int, b: int) -> dict[str, Any]:
    """The errors between classes ``a`` and ``b`` (indices) both ways, e.g. Shirt vs T-shirt/top.

    ``a_as_b``: samples of a predicted as b; ``b_as_a``: the reverse; ``total``: their sum;
    ``n``: the samples of a and b together; ``share``: total / n (None when n is 0).
    """
    mat = as_confusion_matrix(matrix)
    k = len(mat)
    for c in (a, b):
        if not isinstance(c, int | np.integer) or not 0 <= c < k:
            raise ValueError(f"class index {c!r} is not in 0 .. {k - 1}")
    if a == b:
        raise ValueError(f"a pair needs two different classes (got {a} twice)")
    a_as_b, b_as_a = int(mat[a, b]), int(mat[b, a])
    n = int(mat[a].sum() + mat[b].sum())
    total = a_as_b + b_as_a
    return {
        "a_as_b": a_as_b,
        "b_as_a": b_as_a,
        "total": total,
        "n": n,
        "share": total / n if n else None,
    }


def _names(class_names: Sequence[str] | None, k: int) -> list[str]:
    if class_names is None:
        return [str(i) for i in range(k)]
    names = [str(c) for c in class_names]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a {k} x {k} confusion matrix")
    return names


SPLITS = ("train", "val", "test")


def score(
    net: Network,
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    class_names: Sequence[str] | None = None,
) -> Scores:
    """Accuracy, confusion matrix (rows true, columns predicted), per-class accuracy (recall,
    in class order; None for a class without samples) and the most confused pairs of classes
    (``metrics.confused_pairs``, by ``class_names``: default "0", "1", ...) of ``net`` on (X, y)."""
    with np.errstate(over="ignore", invalid="ignore"):  # huge weights still give a prediction
        predicted = net.predict(np.asarray(X, dtype=net.dtype))
    matrix = confusion_matrix(y, predicted, n_classes)
    return Scores(
        n=int(len(y)),
        accuracy=float(np.mean(predicted == y)),
        confusion_matrix=matrix.tolist(),
        per_class_accuracy=per_class_accuracy(matrix),
        confused_pairs=confused_pairs(matrix, class_names),
    )


def score_splits(net: Network, dataset: Dataset) -> dict[str, Scores]:
    """metrics.json: ``score`` of every non-empty split, by split name."""
    metrics = {}
    for split in SPLITS:
        X, y = dataset.split(split)
        if len(y):
            metrics[split] = score(net, X, y, dataset.n_classes, dataset.class_names)
    return metrics
