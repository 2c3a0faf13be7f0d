"""A scikit-learn classifier on scratchnn's own NumPy network: ``ScratchnnClassifier``.

It drops into ``Pipeline``, ``cross_val_score`` and ``GridSearchCV``. Its parameters are the keys
of the YAML spec, flattened: ``model.struct`` is ``model_struct``, ``train.lr`` is ``train_lr``
(the first ``_`` stands for the spec's ``.``), and they are validated by the same schema, so an
impossible value gets the same message as in a config file (as a ValueError).

Defaults differ from the YAML ones where the assignment's settings (single-sample SGD for a
million steps, sigma 0.1 sigmoid units) would make it impractical in a notebook; they follow
scikit-learn's ``MLPClassifier`` instead:

| parameter | here | YAML default | MLPClassifier |
|---|---|---|---|
| ``model_struct`` | (100,) | [] | hidden_layer_sizes=(100,) |
| ``model_activation`` | relu | sigmoid | activation="relu" |
| ``model_init`` | he | normal | (Glorot uniform) |
| ``train_optimizer`` | adam | sgd | solver="adam" |
| ``train_lr`` | 0.001 | 0.001 | learning_rate_init=0.001 |
| ``train_batch_size`` | 200 (or all samples if fewer) | 1 | batch_size=min(200, n) |
| ``train_sampling`` | shuffle | random | shuffle=True |
| ``train_max_epochs`` | 200 | none (max_iterations 1e6) | max_iter=200 |
| ``train_eps`` | 1e-4 | 1e-8 | tol=1e-4 (over 10 epochs) |
| ``train_l2`` | 1e-4 | 0 | alpha=1e-4 |

``train_engine`` (auto, numpy or compiled) is ``train.engine``: auto trains small dense networks
with the compiled loops (``nn/engines.py``), the same numbers to rounding.

The network's dtype follows the input: float32 X trains and predicts in float32, anything else
in float64. ``random_state`` (None, an int, or a RandomState) seeds the initial weights, the
sampling order and the dropout masks, as ``seed`` does in a spec: same data and random_state,
same model.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from scratchnn_cli.assembly import network_for
from scratchnn_cli.config.schema import ModelConfig, TrainConfig, format_validation_error
from scratchnn_cli.errors import ConfigError
from scratchnn_cli.streams import training_streams
from scratchnn_cli.training import TrainResult, train


class _Spec(BaseModel):
    """The two sections of the spec an estimator's parameters fill (errors name model.*,
    train.* as a config file's do)."""

    model_config = ConfigDict(extra="forbid")
    model: ModelConfig
    train: TrainConfig


class ScratchnnClassifier(ClassifierMixin, BaseEstimator):
    """A feed-forward classifier trained by scratchnn (see the module docstring for the
    parameters: each is a key of the YAML spec, ``section_key``)."""

    def __init__(
        self,
        model_struct: Sequence[int] = (100,),
        model_activation: str = "relu",
        model_layers: list[Any] | None = None,
        model_init: str = "he",
        model_mu: float = 0.0,
        model_sigma: float = 0.1,
        model_dropout: float = 0.0,
        train_optimizer: str | dict[str, Any] = "adam",
        train_lr: float = 0.001,
        train_lr_schedule: str | dict[str, Any] = "constant",
        train_batch_size: int | str = 200,
        train_sampling: str = "shuffle",
        train_max_epochs: int = 200,
        train_eps: float = 1e-4,
        train_l1: float = 0.0,
        train_l2: float = 1e-4,
        train_engine: str = "auto",
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.model_struct = model_struct
        self.model_activation = model_activation
        self.model_layers = model_layers
        self.model_init = model_init
        self.model_mu = model_mu
        self.model_sigma = model_sigma
        self.model_dropout = model_dropout
        self.train_optimizer = train_optimizer
        self.train_lr = train_lr
        self.train_lr_schedule = train_lr_schedule
        self.train_batch_size = train_batch_size
        self.train_sampling = train_sampling
        self.train_max_epochs = train_max_epochs
        self.train_eps = train_eps
        self.train_l1 = train_l1
        self.train_l2 = train_l2
        self.train_engine = train_engine
        self.random_state = random_state

    # --- the spec ------------------------------------------------------------------------

    def _sections(self, n_samples: int) -> tuple[ModelConfig, TrainConfig]:
        """The model and train sections these parameters describe (the schema validates)."""
        model: dict[str, Any] = {
            "init": self.model_init,
            "mu": self.model_mu,
            "sigma": self.model_sigma,
        }
        if self.model_layers is not None:
            model["layers"] = list(self.model_layers)
        else:
            model |= {
                "struct": list(self.model_struct),
                "activation": self.model_activation,
                "dropout": self.model_dropout,
            }
        batch = self.train_batch_size
        if isinstance(batch, int | np.integer) and not isinstance(batch, bool):
            batch = min(int(batch), n_samples)
        train_section = {
            "optimizer": self.train_optimizer,
            "lr": self.train_lr,
            "lr_schedule": self.train_lr_schedule,
            "batch_size": batch,
            "sampling": self.train_sampling,
            "max_epochs": self.train_max_epochs,
            "max_iterations": 10**12,
            "eps": self.train_eps,
            "l1": self.train_l1,
            "l2": self.train_l2,
            "engine": self.train_engine,
        }
        try:
            spec = _Spec.model_validate({"model": model, "train": train_section})
        except ValidationError as exc:
            raise ValueError(format_validation_error(exc, type(self).__name__)) from None
        return spec.model, spec.train

    def _seed(self) -> int:
        """An int seed from ``random_state`` (a fresh one for None, as scikit-learn does)."""
        if isinstance(self.random_state, int | np.integer) and not isinstance(
            self.random_state, bool
        ):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(0, 2**31 - 1))

    # --- fitting -----------------------------------------------------------------------------

    def fit(self, X: Any, y: Any) -> ScratchnnClassifier:
        """Train a new network on (X, y) from the initial weights ``random_state`` gives."""
        X, y = self._check_fit_data(X, y, reset=True)
        self.classes_ = unique_labels(y)
        if len(self.classes_) < 2:
            raise ValueError(
                f"ScratchnnClassifier needs samples of at least 2 classes, got 1 class "
                f"({self.classes_[0]!r})"
            )
        self._new_network(X.dtype, X.shape[0])
        return self._train(X, y, self.train_.max_epochs)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> ScratchnnClassifier:
        """One epoch on (X, y), going on from the current weights (and optimizer state is
        restarted); the first call needs ``classes`` (all the labels there will be)."""
        first = not hasattr(self, "classes_")
        X, y = self._check_fit_data(X, y, reset=first)
        if first:
            if classes is None:
                raise ValueError("the first call to partial_fit needs classes=")
            self.classes_ = unique_labels(classes)
            if len(self.classes_) < 2:
                raise ValueError("ScratchnnClassifier needs at least 2 classes")
            self._new_network(X.dtype, X.shape[0])
        elif classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
            raise ValueError(f"classes={classes!r} differs from the first call's {self.classes_}")
        if not np.isin(y, self.classes_).all():
            raise ValueError(f"y has labels that are not in classes_ {self.classes_}")
        return self._train(X, y, 1)

    def _check_fit_data(self, X: Any, y: Any, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(
            self, X, y, reset=reset, dtype=[np.float64, np.float32], y_numeric=False
        )
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        return X, y

    def _new_network(self, dtype: np.dtype, n_samples: int) -> None:
        """A fresh network for ``n_features_in_`` inputs and ``classes_``, and its streams."""
        model, self.train_ = self._sections(n_samples)
        seed = self._seed()
        self.seed_ = seed
        streams = training_streams(seed)
        self._sampling = streams.sampling
        try:
            self.net_ = network_for(
                model, self.n_features_in_, len(self.classes_), dtype, streams.init, streams.dropout
            )
        except ConfigError as exc:  # a layer that does not fit the input (conv on rows...)
            raise ValueError(f"{type(self).__name__}: {exc}") from None

    def _train(self, X: np.ndarray, y: np.ndarray, epochs: int) -> ScratchnnClassifier:
        labels = np.searchsorted(self.classes_, y)
        cfg = self.train_.model_copy(update={"max_epochs": epochs})
        with np.errstate(over="ignore", invalid="ignore"):
            result: TrainResult = train(
                self.net_, X, labels, len(self.classes_), cfg, self._sampling
            )
        self.n_iter_ = result.epochs
        self.stopped_by_ = result.stopped_by
        if result.stopped_by == "diverged":  # as scikit-learn's estimators say a failed fit
            warnings.warn(
                f"training {result.stop_reason}",
                ConvergenceWarning,
                stacklevel=3,
            )
        self.loss_curve_ = [r.cost for r in result.history]
        return self

    # --- predicting ----------------------------------------------------------------------

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n_samples, n_classes), columns in the order of ``classes_``."""
        check_is_fitted(self, "net_")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        with np.errstate(over="ignore", invalid="ignore"):
            P = self.net_.predict_proba(X)
        return np.hstack([1 - P, P]) if P.shape[1] == 1 else P

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each sample (labels from ``classes_``)."""
        P = self.predict_proba(X)  # first: it says NotFittedError before fit
        return self.classes_[np.argmax(P, axis=1)]

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with the network's arrays (W, b are views into one theta: rebuilt on load)."""
        state = self.__dict__.copy()
        net = state.pop("net_", None)
        if net is not None:
            state["_net_arrays"] = (net.state(), net.dtype)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        arrays = state.pop("_net_arrays", None)
        self.__dict__.update(state)
        if arrays is not None:
            weights, dtype = arrays
            self._network_from(weights, dtype)

    def _network_from(self, weights: dict[str, np.ndarray], dtype: np.dtype) -> None:
        """The fitted network again, from its saved arrays (after unpickling)."""
        seed, train_section = self.seed_, self.train_
        sampling_state = self._sampling.bit_generator.state
        self._new_network(dtype, 1)
        self.seed_, self.train_ = seed, train_section
        self._sampling.bit_generator.state = sampling_state
        self.net_.load_state(weights)
