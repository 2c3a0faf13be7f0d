"""ScratchnnClassifier: scikit-learn's own estimator checks, and what a user relies on (a fit
that diverges warns, as scikit-learn's do)."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_blobs
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from scratchnn_cli.estimator import ScratchnnClassifier


def _without_array_api(marker):
    """scikit-learn's checks, all of them but ``check_array_api_input``: it feeds array-API
    namespaces (CuPy, torch...) to an estimator; this NumPy estimator does not declare array-API
    support, and scikit-learn skips that check when SCIPY_ARRAY_API is unset (a skip is not a
    pass, so it is left out, not skipped)."""
    names, params = marker.args
    kept = [p for p in params if "array_api" not in repr(p)]
    return pytest.mark.parametrize(names, kept, **marker.kwargs)


@_without_array_api(parametrize_with_checks([ScratchnnClassifier(random_state=0)]))
def test_scikit_learn_estimator_checks(estimator, check) -> None:
    check(estimator)


def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return data.data / 16.0, data.target


def test_same_random_state_same_model_and_float32_stays_float32() -> None:
    X, y = digits()
    X = X[:600].astype(np.float32)
    a = ScratchnnClassifier(model_struct=(32,), train_max_epochs=5, random_state=3).fit(X, y[:600])
    b = ScratchnnClassifier(model_struct=(32,), train_max_epochs=5, random_state=3).fit(X, y[:600])
    np.testing.assert_array_equal(a.net_.theta, b.net_.theta)
    assert a.net_.theta.dtype == np.float32 and a.predict_proba(X).dtype == np.float32
    c = ScratchnnClassifier(model_struct=(32,), train_max_epochs=5, random_state=4).fit(X, y[:600])
    assert not np.array_equal(a.net_.theta, c.net_.theta)


@pytest.mark.slow
def test_learns_digits_in_a_pipeline_and_cross_validates() -> None:
    X, y = digits()
    pipe = make_pipeline(StandardScaler(), ScratchnnClassifier(random_state=0))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.min() > 0.9, scores


def test_grid_search_over_spec_keys() -> None:
    X, y = make_blobs(n_samples=300, centers=3, random_state=0)
    grid = GridSearchCV(
        ScratchnnClassifier(train_max_epochs=30, random_state=0),
        {"train_lr": [1e-4, 1e-2], "model_struct": [(8,), (16, 8)]},
        cv=3,
    ).fit(X, y)
    assert grid.best_params_["train_lr"] == 1e-2
    assert grid.best_score_ > 0.9


def test_string_labels_and_probabilities() -> None:
    X, y = make_blobs(n_samples=200, centers=2, random_state=1)
    labels = np.array(["cat", "dog"])[y]
    clf = ScratchnnClassifier(train_max_epochs=50, random_state=0).fit(X, labels)
    assert list(clf.classes_) == ["cat", "dog"]
    P = clf.predict_proba(X)
    assert P.shape == (200, 2)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[P.argmax(axis=1)])
    assert clf.score(X, labels) > 0.95


def test_bad_parameters_get_the_spec_message() -> None:
    X, y = make_blobs(n_samples=50, centers=2, random_state=0)
    with pytest.raises(ValueError, match=r"^ScratchnnClassifier: train\.lr: .*greater than 0"):
        ScratchnnClassifier(train_lr=-1).fit(X, y)
    with pytest.raises(ValueError, match=r"train\.optimizer\.name: unknown name 'adma'"):
        ScratchnnClassifier(train_optimizer="adma").fit(X, y)
    with pytest.raises(ValueError, match=r"model\.struct\.0: .*expected a number, got the boolean"):
        ScratchnnClassifier(model_struct=(True,)).fit(X, y)
    # what only the data reveals: the same line as a config file's, as a ValueError
    with pytest.raises(ValueError, match=r"^ScratchnnClassifier: model\.layers: conv2d: needs im"):
        ScratchnnClassifier(model_layers=[{"type": "conv2d", "filters": 2}, "flatten"]).fit(X, y)


def test_layers_form_and_partial_fit_and_pickle() -> None:
    X, y = digits()
    clf = ScratchnnClassifier(
        model_layers=[{"type": "dense", "units": 32}, "tanh"], train_lr=0.01, random_state=0
    )
    for _ in range(10):
        clf.partial_fit(X, y, classes=np.arange(10))
    assert clf.score(X, y) > 0.9
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    # the unpickled network still trains through one flat theta: both continue identically
    clf.partial_fit(X, y)
    again.partial_fit(X, y)
    np.testing.assert_array_equal(again.net_.theta, clf.net_.theta)
    assert np.shares_memory(again.net_.layers[0].W, again.net_.theta)
    with pytest.raises(ValueError, match="classes="):
        ScratchnnClassifier().partial_fit(X, y)


# --------------------------------------------------------------------------- a diverged fit


def test_the_estimator_warns_when_its_fit_diverges() -> None:
    """As scikit-learn does for a fit that failed (the CLI exits 3 for the same run)."""
    from sklearn.datasets import make_blobs
    from sklearn.exceptions import ConvergenceWarning

    from scratchnn_cli.estimator import ScratchnnClassifier

    X, y = make_blobs(200, centers=2, random_state=0)
    with pytest.warns(ConvergenceWarning, match="training diverged in epoch"):
        ScratchnnClassifier(train_lr=1e200, train_max_epochs=20, random_state=0).fit(X * 1e100, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a sound fit: no warning
        ScratchnnClassifier(train_lr=0.05, train_max_epochs=5, random_state=0).fit(X, y)
