"""The random streams of a run: one seed, one independent generator per purpose.

Every random number the project draws comes from ``stream(seed, PURPOSE)``, numpy's
``default_rng([seed, PURPOSE])``: changing how one purpose draws (more dropout masks, another
augmentation) never shifts another's numbers, and no code uses numpy's global random state.
A purpose's number is part of every run folder's results: never renumber one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    """What each stream draws (the second number of its seed)."""

    DATA_SPLIT = 1  # the train / val / test split (data/dataset.py)
    INIT = 2  # the initial weights
    SAMPLING = 3  # the order of the samples in each epoch
    DROPOUT = 4  # dropout masks
    GRADCHECK = 5  # the samples and entries a gradient check uses, and its noise
    AUGMENT = 6  # the transforms of training batches (data.augment)
    AUGMENT_EXAMPLES = 7  # the examples drawn into augmentation.png
    CV_FOLDS = 8  # the folds of data.cv (its seed for scikit-learn's splitter)
    SWEEP_POINTS = 9  # the points a sweep's --random draws from its grid


def stream(seed: int, purpose: Stream) -> np.random.Generator:
    """The generator of ``purpose`` for the run seeded ``seed``."""
    return np.random.default_rng([seed, int(purpose)])


@dataclass(frozen=True)
class TrainingStreams:
    """The generators a training draws from: its initial weights, its sample order, its dropout
    masks and its augmentation, each the stream of its purpose."""

    init: np.random.Generator
    sampling: np.random.Generator
    dropout: np.random.Generator
    augment: np.random.Generator


def training_streams(seed: int) -> TrainingStreams:
    """The training streams of the run seeded ``seed``, each at its start."""
    return TrainingStreams(
        init=stream(seed, Stream.INIT),
        sampling=stream(seed, Stream.SAMPLING),
        dropout=stream(seed, Stream.DROPOUT),
        augment=stream(seed, Stream.AUGMENT),
    )
