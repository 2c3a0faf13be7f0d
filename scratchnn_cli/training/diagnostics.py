"""When training diagnostics are taken: on a fixed probe of training samples, at the initial
weights and after epochs, within a share of the training's time.

The statistics themselves (and their formulas) are in ``nn/diagnostics.py``; what they mean
is read in ``diagnose.py``. Taking them never changes the training's numbers: the probe
leaves the network as it was, and it draws no random numbers.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict

import numpy as np

from scratchnn_cli.nn.diagnostics import probe_statistics
from scratchnn_cli.nn.network import Network
from scratchnn_cli.records import DiagnosticsRow, EpochRecord

#: Samples in the probe: enough for stable shares of saturated or dead units, few enough that
#: a probe of the Fashion-MNIST networks costs a fraction of an epoch.
PROBE_SAMPLES = 512
#: Diagnostics may take at most this share of the training's time so far (`make bench` checks
#: 5% of an epoch of the large configs, 10% of a tiny single-sample run): a probe is skipped
#: while the time spent probing would exceed it, so long runs of tiny epochs probe now and then.
TIME_SHARE = 0.03


class Diagnostics:
    """Takes the probe's statistics (``take``) when the time budget allows (``due``), and keeps
    the rows for diagnostics.csv."""

    def __init__(self, net: Network, X: np.ndarray, y: np.ndarray, n_classes: int) -> None:
        """The probe: ``PROBE_SAMPLES`` evenly spaced samples of X (no random draw), with the
        targets of their labels as ``net``'s loss encodes them."""
        n = len(X)
        pick = np.unique(np.linspace(0, n - 1, min(PROBE_SAMPLES, n)).astype(np.int64))
        self.X, self.Y = X[pick], net.loss.targets(y[pick], n_classes, net.dtype)
        self.rows: list[DiagnosticsRow] = []
        self.spent = 0.0
        self.started = time.perf_counter()
        self.last_epoch: int | None = None

    def due(self) -> bool:
        """Whether a probe now keeps the time spent probing within ``TIME_SHARE``."""
        elapsed = time.perf_counter() - self.started
        return self.spent <= TIME_SHARE * elapsed

    def take(self, net: Network, epoch: int, lr: float) -> None:
        """Probe ``net`` after ``epoch`` epochs (0: before training) at the rate ``lr``."""
        start = time.perf_counter()
        cost, layers = probe_statistics(net, self.X, self.Y, lr)
        probe_cost = float(cost) if math.isfinite(cost) else math.nan
        for s in layers:  # a layer's statistics, with when and the probe's cost
            self.rows.append(DiagnosticsRow(epoch=epoch, probe_cost=probe_cost, **asdict(s)))
        self.spent += time.perf_counter() - start
        self.last_epoch = epoch

    def after_epoch(self, net: Network, record: EpochRecord) -> None:
        """Probe after this epoch if the budget allows it."""
        if self.due():
            self.take(net, record.epoch, record.lr)

    def finish(self, net: Network, last: EpochRecord | None) -> None:
        """Probe the final weights, whatever the budget (unless that epoch was probed)."""
        if last is not None and self.last_epoch != last.epoch:
            self.take(net, last.epoch, last.lr)
