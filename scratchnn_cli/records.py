"""The records training produces and the run folder stores: one row of the history
(``EpochRecord``), what a training did (``TrainResult``) and what it can be resumed from
(``Snapshot``), a model's scores on a split (``Scores``, with its ``ConfusedPair``s, made by
``metrics.score``) and what a run produced (``RunOutcome``). They sit below ``training/`` and
``metrics.py``, which fill them, and ``runs/``, which writes them (and reads the history and
snapshots back), so storage needs neither."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class EpochRecord:
    """One row of ``history.csv``; validation columns are None when not evaluated."""

    epoch: int
    iteration: int
    cost: float
    train_accuracy: float
    lr: float
    seconds: float
    val_cost: float | None = None
    val_accuracy: float | None = None


@dataclass
class TrainResult:
    """What training did and why it stopped.

    ``stopped_by`` is one of: eps, max_iterations, max_epochs, early_stopping, diverged,
    interrupted.
    """

    history: list[EpochRecord] = field(default_factory=list)
    stopped_by: str = ""
    stop_reason: str = ""
    iterations: int = 0
    epochs: int = 0
    seconds: float = 0.0
    best_epoch: int | None = None


@dataclass
class Snapshot:
    """Everything training needs to go on from the end of an epoch exactly as if never stopped:
    the weights (and the layers' untrained state), the optimizer's state, both random
    generators, the stopping rules' state and the history. A checkpoint on disk is one of
    these (see ``runs.write_checkpoint``)."""

    epochs: int
    iterations: int
    seconds: float
    J_prev: float | None
    params: list[np.ndarray]
    optimizer: dict[str, Any]
    sampling_rng: dict[str, Any]
    dropout_rng: dict[str, Any] | None
    history: list[EpochRecord]
    stopper: dict[str, Any] | None = None
    best_params: list[np.ndarray] | None = None
    buffers: dict[str, np.ndarray] = field(default_factory=dict)
    best_buffers: dict[str, np.ndarray] = field(default_factory=dict)
    augment_rng: dict[str, Any] | None = None


@dataclass(frozen=True)
class ConfusedPair:
    """``count`` samples of class ``true`` predicted as ``predicted``: ``share_of_true`` of the
    samples of ``true``."""

    true: str
    predicted: str
    count: int
    share_of_true: float


@dataclass(frozen=True)
class Scores:
    """A model's scores on one split: ``n`` samples, the share predicted right, the confusion
    matrix (rows true, columns predicted), each class's accuracy (its recall; None for a class
    without samples) and the most confused pairs. An entry of metrics.json (``to_json``), and
    the scores of evaluation-SPLIT.json."""

    n: int
    accuracy: float
    confusion_matrix: list[list[int]]
    per_class_accuracy: list[float | None]
    confused_pairs: list[ConfusedPair]

    def to_json(self) -> dict[str, Any]:
        """The mapping metrics.json holds for the split (the pairs as mappings too)."""
        return asdict(self)


@dataclass
class RunOutcome:
    """What a run produced: its folder, its final status, what training did, the scores of
    each split it has (``Scores``, by split name)."""

    run_dir: Path
    status: str
    result: TrainResult
    metrics: dict[str, Scores]


@dataclass(frozen=True)
class DiagnosticsRow:
    """One row of diagnostics.csv: a layer's statistics on the probe after ``epoch`` epochs
    (0: the initial weights), with the probe's mean cost (None where a statistic does not
    apply to the layer; ``nn/diagnostics.py`` says what each is)."""

    epoch: int
    layer: int
    kind: str
    probe_cost: float
    weight_norm: float | None = None
    grad_norm: float | None = None
    update_ratio: float | None = None
    saturated: float | None = None
    dead: float | None = None
    twins: float | None = None
