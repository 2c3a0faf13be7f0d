"""The random streams of a run: one seed, one independent generator per purpose.

Every random number the project draws comes from ``stream(seed, PURPOSE)``, numpy's
``default_rng([seed, PURPOSE])``: changing how one purpose draws (more dropout masks, another
augmentation) never shifts another's numbers, and no code uses numpy's global random state.
A purpose's number is part of every run folder's results: never renumber one.
"""

from __future__ import annotations

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
