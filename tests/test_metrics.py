"""Tests for ``scratchnn_cli.metrics``: per-class accuracy and the most confused pairs, on
hand-computed matrices and against scikit-learn / plain counting of label arrays."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import confusion_matrix, recall_score

from scratchnn_cli import metrics
from scratchnn_cli.metrics import confused_pairs, pair_confusion, per_class_accuracy
from scratchnn_cli.records import ConfusedPair

# rows true, columns predicted; worked out by hand below
HAND = [
    [5, 3, 2],  # a: 10 samples, 5 right; 3 as b, 2 as c
    [0, 8, 0],  # b: 8 samples, all right
    [4, 0, 0],  # c: 4 samples, none right; 4 as a
]
NAMES = ["a", "b", "c"]


# --------------------------------------------------------------------------- confusion matrix


def test_confusion_matrix_by_hand() -> None:
    # HAND as label pairs: a (0) 5x right, 3x as b, 2x as c; b (1) 8x right; c (2) 4x as a
    y_true = [0] * 10 + [1] * 8 + [2] * 4
    y_pred = [0] * 5 + [1] * 3 + [2] * 2 + [1] * 8 + [0] * 4
    matrix = metrics.confusion_matrix(np.array(y_true), np.array(y_pred), 3)
    assert matrix.dtype == np.int64
    assert matrix.tolist() == HAND


def test_confusion_matrix_keeps_absent_classes_and_drops_unknown_labels() -> None:
    y_true = np.array([0, 0, 3, 7, -1, 2])  # class 1 never occurs; 7 and -1 are not classes
    y_pred = np.array([0, 2, 0, 0, 0, 9])  # 9 is not a class either
    assert metrics.confusion_matrix(y_true, y_pred, 4).tolist() == [
        [1, 0, 1, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [1, 0, 0, 0],
    ]


def test_confusion_matrix_of_no_samples_is_all_zero() -> None:
    empty = np.array([], dtype=np.int64)
    assert metrics.confusion_matrix(empty, empty, 2).tolist() == [[0, 0], [0, 0]]


def test_confusion_matrix_refuses_bad_labels() -> None:
    with pytest.raises(ValueError, match="3 true labels but 2"):
        metrics.confusion_matrix(np.array([0, 1, 1]), np.array([0, 1]), 2)
    with pytest.raises(ValueError, match="integers"):
        metrics.confusion_matrix(np.array([0.0, 1.0]), np.array([0, 1]), 2)


# k classes; labels drawn from -1 .. k + 1, so some are not classes, and small k x few samples
# leave classes absent from y_true, from y_pred or from both
label_arrays = st.integers(min_value=1, max_value=7).flatmap(
    lambda k: st.tuples(
        st.just(k),
        st.lists(st.tuples(st.integers(-1, k + 1), st.integers(-1, k + 1)), min_size=1),
    )
)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:A single label was found")  # sklearn's, about k == 1
@settings(max_examples=300, deadline=None)
@given(label_arrays)
def test_confusion_matrix_equals_sklearn(case: tuple[int, list[tuple[int, int]]]) -> None:
    k, pairs = case
    y_true = np.array([t for t, _ in pairs], dtype=np.int64)
    y_pred = np.array([p for _, p in pairs], dtype=np.int64)
    ours = metrics.confusion_matrix(y_true, y_pred, k)
    if not np.isin(y_true, np.arange(k)).any():  # sklearn refuses this case outright
        assert not ours.any()  # every pair has a true label outside the classes
        return
    theirs = confusion_matrix(y_true, y_pred, labels=np.arange(k))
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


def test_confusion_matrix_equals_sklearn_on_many_random_labels() -> None:
    rng = np.random.default_rng(0)
    for k in (2, 3, 10):
        y_true = rng.integers(0, k, 5000)
        y_pred = np.where(rng.random(5000) < 0.7, y_true, rng.integers(0, k, 5000))
        y_pred[y_pred == k - 1] = 0  # the last class is never predicted
        ours = metrics.confusion_matrix(y_true, y_pred.astype(np.int32), k)
        np.testing.assert_array_equal(ours, confusion_matrix(y_true, y_pred, labels=range(k)))


# --------------------------------------------------------------------------- per-class accuracy


def test_per_class_accuracy_by_hand() -> None:
    assert per_class_accuracy(HAND) == [0.5, 1.0, 0.0]


def test_a_class_without_samples_is_none() -> None:
    matrix = [[3, 1, 0], [0, 0, 0], [0, 2, 2]]  # class 1 never occurs (but is predicted)
    assert per_class_accuracy(matrix) == [0.75, None, 0.5]


def test_per_class_accuracy_of_an_empty_matrix() -> None:
    assert per_class_accuracy(np.zeros((2, 2), dtype=int)) == [None, None]
    assert per_class_accuracy(np.zeros((0, 0), dtype=int)) == []


@pytest.mark.parametrize(
    "bad",
    [[[1, 2, 3]], [1, 2], [[1, -1], [0, 2]], [[1.5, 0], [0, 1]], [[np.nan, 0], [0, 1]]],
)
def test_not_a_confusion_matrix_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="confusion matrix"):
        per_class_accuracy(bad)
    with pytest.raises(ValueError, match="confusion matrix"):
        confused_pairs(bad)


def test_float_counts_are_accepted() -> None:
    assert per_class_accuracy(np.asarray(HAND, dtype=float)) == [0.5, 1.0, 0.0]


# --------------------------------------------------------------------------- confused pairs


def test_confused_pairs_by_hand() -> None:
    assert confused_pairs(HAND, NAMES) == [
        ConfusedPair("c", "a", 4, 1.0),
        ConfusedPair("a", "b", 3, 0.3),
        ConfusedPair("a", "c", 2, 0.2),
    ]  # the six zero cells off the diagonal are left out


def test_ties_are_sorted_by_true_then_predicted_name() -> None:
    matrix = [[0, 2, 2], [2, 0, 1], [2, 0, 0]]
    pairs = confused_pairs(matrix, ["z", "y", "x"])
    assert [(p.true, p.predicted, p.count) for p in pairs] == [
        ("x", "z", 2),
        ("y", "z", 2),
        ("z", "x", 2),
        ("z", "y", 2),
        ("y", "x", 1),
    ]


def test_top_limits_the_pairs() -> None:
    assert [p.count for p in confused_pairs(HAND, NAMES, top=2)] == [4, 3]
    assert confused_pairs(HAND, NAMES, top=0) == []
    assert len(confused_pairs(HAND, NAMES, top=None)) == 3
    with pytest.raises(ValueError, match="top"):
        confused_pairs(HAND, NAMES, top=-1)


def test_default_top_is_five() -> None:
    matrix = np.ones((4, 4), dtype=int)  # 12 off-diagonal errors of one each
    assert len(confused_pairs(matrix)) == 5


def test_names_default_to_indices_and_must_fit() -> None:
    assert confused_pairs(HAND)[0].true == "2"
    assert confused_pairs(HAND)[0].predicted == "0"
    with pytest.raises(ValueError, match="2 class names for a 3 x 3"):
        confused_pairs(HAND, ["a", "b"])


def test_no_errors_no_pairs() -> None:
    assert confused_pairs(np.diag([3, 4, 5]), NAMES) == []


def test_pairs_are_plain_json_types() -> None:
    pair = confused_pairs(np.asarray(HAND, dtype=np.int64), NAMES)[0]
    assert type(pair.count) is int
    assert type(pair.share_of_true) is float


# --------------------------------------------------------------------------- one pair both ways


def test_pair_confusion_by_hand() -> None:
    assert pair_confusion(HAND, 0, 2) == {
        "a_as_b": 2,
        "b_as_a": 4,
        "total": 6,
        "n": 14,
        "share": 6 / 14,
    }
    assert pair_confusion(HAND, 2, 0)["a_as_b"] == 4
    assert pair_confusion(HAND, 1, 2) == {"a_as_b": 0, "b_as_a": 0, "total": 0, "n": 12, "share": 0}


def test_pair_confusion_of_absent_classes() -> None:
    assert pair_confusion(np.zeros((3, 3), dtype=int), 0, 1)["share"] is None


@pytest.mark.parametrize(("a", "b"), [(0, 0), (0, 3), (-1, 1), (1.0, 2)])
def test_pair_confusion_refuses_bad_classes(a: object, b: object) -> None:
    with pytest.raises(ValueError):
        pair_confusion(HAND, a, b)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- vs scikit-learn


labels = st.integers(min_value=2, max_value=6).flatmap(
    lambda k: st.tuples(
        st.just(k),
        st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), min_size=1, max_size=60),
    )
)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(labels)
def test_per_class_accuracy_is_sklearn_recall(case: tuple[int, list[tuple[int, int]]]) -> None:
    k, pairs = case
    y_true = np.array([t for t, _ in pairs], dtype=int)
    y_pred = np.array([p for _, p in pairs], dtype=int)
    matrix = confusion_matrix(y_true, y_pred, labels=np.arange(k))
    ours = per_class_accuracy(matrix)
    theirs = recall_score(y_true, y_pred, labels=np.arange(k), average=None, zero_division=np.nan)
    assert len(ours) == k
    for c in range(k):
        if np.isnan(theirs[c]):
            assert ours[c] is None and c not in y_true
        else:
            assert ours[c] == pytest.approx(theirs[c], abs=1e-12)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(labels)
def test_confused_pairs_match_counting_the_labels(case: tuple[int, list[tuple[int, int]]]) -> None:
    k, pairs = case
    y_true = np.array([t for t, _ in pairs], dtype=int)
    y_pred = np.array([p for _, p in pairs], dtype=int)
    matrix = confusion_matrix(y_true, y_pred, labels=np.arange(k))
    names = [f"class {chr(ord('a') + c)}" for c in range(k)]
    errors = Counter((names[t], names[p]) for t, p in pairs if t != p)
    n_true = Counter(names[t] for t, _ in pairs)
    expected = sorted(errors.items(), key=lambda item: (-item[1], item[0]))
    got = confused_pairs(matrix, names, top=None)
    assert [((p.true, p.predicted), p.count) for p in got] == expected
    for p in got:
        assert p.share_of_true == pytest.approx(p.count / n_true[p.true])
    assert confused_pairs(matrix, names) == got[:5]
    for a in range(k):
        for b in range(k):
            if a != b:
                both = pair_confusion(matrix, a, b)
                assert both["a_as_b"] == errors[(names[a], names[b])]
                assert both["b_as_a"] == errors[(names[b], names[a])]
