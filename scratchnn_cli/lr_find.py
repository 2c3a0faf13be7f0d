"""The learning-rate range test (Smith 2015, "Cyclical learning rates"; fastai's ``lr_find``).

A short run from the spec's initial weights in which the learning rate grows exponentially,
update by update, from ``start`` to ``end``: the rate of update i (0-based, of n) is

    lr_i = start * (end / start) ** (i / (n - 1)),

equal steps on a log scale. Each update's cost J (the cross-entropy of its batch in training
mode, before its step, plus the L1/L2 penalty) is recorded, with its exponential moving average

    avg_i = beta avg_(i-1) + (1 - beta) J_i,      smoothed_i = avg_i / (1 - beta^(i+1))

(bias-corrected: the first values are averages of the few costs there are, not pulled to 0),
its memory of 1 / (1 - beta) updates spanning ``SMOOTHING_DECADES`` of rate however many updates
the test has (``smoothing_beta``). The test stops when the smoothed cost passes ``BLOW_UP``
times its best, or a cost is NaN or infinite: larger rates only diverge. The suggested rate is
where the smoothed cost falls fastest per decade of rate, before its lowest point: small enough
not to diverge, large enough to learn.

Everything else is what ``scratchnn train`` would do: the same network and initial weights, the
same sample order (the sampling stream), dropout masks and augmentation, batch size, update rule
(its moments start from zero, as in training) and engine. Each update runs as the trainer's
epoch of one batch, on either engine (the compiled kernel reads the rate at every call), so the
rate can change between any two updates; only ``train.lr`` and ``train.lr_schedule`` are not
used. Nothing is written here: ``cli/lr_find.py`` draws the curve and saves it with the
result's CSV and JSON texts.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from scratchnn_cli.assembly import augmenter, checked_network, choose_run_engine, training_set
from scratchnn_cli.config import ExperimentConfig
from scratchnn_cli.data import load_dataset
from scratchnn_cli.errors import UserInputError
from scratchnn_cli.training.loop import Trainer, trainer_for

#: How much of the rate axis, in decades, the smoothing's memory spans (``smoothing_beta``).
SMOOTHING_DECADES = 0.2
#: The test stops once the smoothed cost is this many times its best so far (fastai's rule).
BLOW_UP = 4.0
#: The suggestion ignores this share of the first updates, where the moving average still
#: stands on a few noisy costs (fastai skips the first tenth too).
SKIP_START = 0.1
#: The default test sees about this many samples (``default_updates``).
SAMPLES_SEEN = 32_000
#: The fewest and the most updates of the default test.
MIN_UPDATES, MAX_UPDATES = 100, 4_000

NEVER_FELL = "the smoothed cost never fell (try a smaller --start or more --updates)"


@dataclass(frozen=True)
class LRFindResult:
    """One range test: the rate and cost of each update that ran, the smoothed cost, the
    suggested rate (None when the cost never fell) and why, and how the test ended."""

    lrs: np.ndarray
    costs: np.ndarray
    smoothed: np.ndarray
    suggested: float | None
    why: str
    stopped_early: bool
    stop_reason: str
    start: float
    end: float
    total_updates: int
    beta: float
    engine: str
    configured_lr: float
    seconds: float

    def curve_csv(self) -> str:
        """lr_find.csv: one row per update, its rate, its batch's cost and the smoothed cost."""
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["update", "lr", "cost", "smoothed"])
        rows = zip(self.lrs, self.costs, self.smoothed, strict=True)
        for i, (lr, cost, smoothed) in enumerate(rows):
            writer.writerow([i + 1, repr(float(lr)), repr(float(cost)), repr(float(smoothed))])
        return text.getvalue()

    def to_json(self) -> dict[str, object]:
        """lr_find.json: the suggestion and why, how the test ran and ended."""
        return {
            "suggested_lr": self.suggested,
            "why": self.why,
            "configured_lr": self.configured_lr,
            "start": self.start,
            "end": self.end,
            "planned_updates": self.total_updates,  # the file's key since lr-find began
            "smoothing_beta": self.beta,
            "updates": len(self.lrs),
            "stopped_early": self.stopped_early,
            "stop_reason": self.stop_reason,
            "engine": self.engine,
            "seconds": round(self.seconds, 3),
        }


def default_updates(rows_per_update: int) -> int:
    """How many updates the test runs by default: ``SAMPLES_SEEN`` samples in batches of
    ``rows_per_update``, kept between ``MIN_UPDATES`` and ``MAX_UPDATES``.

    The length matters, not only the time: a rate shows as a falling cost once it has moved the
    weights far enough, and the fewer updates each rate gets, the larger the rate that manages
    it, so a short test suggests rates too large for a long training (a network that must first
    leave a plateau most of all). A fixed number of samples, rather than of updates, keeps the
    time about the same for every batch size: many cheap updates for small batches, fewer
    costly ones for large."""
    return min(MAX_UPDATES, max(MIN_UPDATES, round(SAMPLES_SEEN / rows_per_update)))


def rate_schedule(start: float, end: float, updates: int) -> np.ndarray:
    """The rate of each update: ``start`` to ``end`` in equal steps on a log scale."""
    i = np.arange(updates)
    return start * (end / start) ** (i / (updates - 1))


def smoothing_beta(start: float, end: float, updates: int) -> float:
    """The beta of the moving average whose memory, 1 / (1 - beta) updates, spans
    ``SMOOTHING_DECADES`` of the rate (0, no smoothing, when that is less than one update).

    fastai's fixed beta of 0.98 remembers 50 updates, whatever they span: over 100 updates from
    1e-7 to 10, four decades, so the smoothed cost lags the costs by a factor of 10,000 in rate
    and its steepest descent lands far to the right of theirs. A memory fixed on the rate axis
    lags by the same factor of rate in a test of any length or range (fastai's beta is the one
    of 250 updates per decade)."""
    per_decade = (updates - 1) / math.log10(end / start)
    return 1.0 - 1.0 / max(1.0, SMOOTHING_DECADES * per_decade)


def memory(beta: float) -> int:
    """How many updates the moving average of ``beta`` remembers: 1 / (1 - beta), at least 1."""
    return max(1, round(1.0 / (1.0 - beta)))


def suggest(lrs: np.ndarray, smoothed: np.ndarray, span: int) -> tuple[float | None, str]:
    """(the rate where ``smoothed`` falls fastest against log10(lr), why in a phrase), or (None,
    why not) when it never fell. ``lrs`` and ``smoothed`` end before the cost blew up.

    The fall is measured across ``span`` updates (the smoothing's memory): between neighbouring
    updates the change of the smoothed cost is mostly the noise of one batch, as steep as any
    real descent. It is looked for from the first ``SKIP_START`` of the updates on, up to the
    lowest smoothed cost (past it the cost only rises). The smoothed cost lags the costs by
    about its memory, so its fall over updates i - span to i is the costs' fall around the rate
    of update i - span: the rate suggested."""
    first = int(SKIP_START * len(lrs))
    if len(lrs) - first <= span:
        return None, NEVER_FELL
    lowest = first + int(np.argmin(smoothed[first:]))
    ends = np.arange(first + span, lowest + 1)  # spans from update i - span to update i
    if len(ends) == 0:
        return None, NEVER_FELL
    slope = (smoothed[ends] - smoothed[ends - span]) / np.log10(lrs[ends] / lrs[ends - span])
    k = int(np.argmin(slope))
    if not slope[k] < 0:
        return None, NEVER_FELL
    lr = float(lrs[ends[k] - span])
    return lr, (
        f"the steepest descent of the smoothed cost, {slope[k]:.3g} per decade of rate from "
        f"lr={lr:.2g} to lr={lrs[ends[k]]:.2g} (its lowest, {smoothed[lowest]:.3g}, at "
        f"lr={lrs[lowest]:.2g})"
    )


def check_range(start: float, end: float, updates: int | None) -> None:
    """UserInputError (one line) for a range the test cannot run."""
    if not (math.isfinite(start) and start > 0):
        raise UserInputError(f"--start must be a number > 0 (got {start:g})")
    if not (math.isfinite(end) and end > 0):
        raise UserInputError(f"--end must be a number > 0 (got {end:g})")
    if not start < end:
        raise UserInputError(f"--start ({start:g}) must be below --end ({end:g})")
    if updates is not None and updates < 2:
        raise UserInputError(f"--updates must be at least 2 (got {updates})")


def lr_range_test(
    config: ExperimentConfig,
    start: float = 1e-7,
    end: float = 10.0,
    updates: int | None = None,
) -> LRFindResult:
    """Run the range test of the spec ``config`` (the module docstring): ``updates`` rates from
    ``start`` to ``end`` (None: ``default_updates``), one update each, stopped early when the
    smoothed cost blows up. UserInputError for a bad range; ConfigError or DataError where
    ``scratchnn train`` would refuse the spec."""
    check_range(start, end, updates)
    began = time.perf_counter()
    trainer, engine = _trainer(config)
    n = updates if updates is not None else default_updates(trainer.B)
    lrs = rate_schedule(start, end, n)
    beta = smoothing_beta(start, end, n)
    costs: list[float] = []
    smoothed: list[float] = []
    avg, best = 0.0, math.inf
    stop_reason, blown = f"ran all {n} updates", False
    batches = _batches(trainer)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # divergence is expected
        for i, lr in enumerate(lrs):
            cost = _update(trainer, next(batches), float(lr))
            avg = beta * avg + (1.0 - beta) * cost
            costs.append(cost)
            smoothed.append(avg / (1.0 - beta ** (i + 1)))
            if not math.isfinite(smoothed[-1]):
                stop_reason, blown = f"the cost became {cost:g} at lr={lr:.2g}", True
                break
            best = min(best, smoothed[-1])
            if smoothed[-1] > BLOW_UP * best:
                stop_reason = f"the smoothed cost passed {BLOW_UP:g}x its best at lr={lr:.2g}"
                blown = True
                break
    ran = len(costs)
    kept = ran - 1 if blown else ran  # the update past the blow-up is no part of the descent
    suggested, why = suggest(lrs[:kept], np.array(smoothed[:kept]), memory(beta))
    return LRFindResult(
        lrs=lrs[:ran],
        costs=np.array(costs),
        smoothed=np.array(smoothed),
        suggested=suggested,
        why=why,
        stopped_early=blown,
        stop_reason=stop_reason,
        start=start,
        end=end,
        total_updates=n,
        beta=beta,
        engine=engine,
        configured_lr=config.train.lr,
        seconds=time.perf_counter() - began,
    )


def _trainer(config: ExperimentConfig) -> tuple[Trainer, str]:
    """The trainer ``scratchnn train`` would make of the spec (its data, initial network,
    streams, augmentation and engine), with no budget of its own, and the engine's name."""
    dataset = load_dataset(config.data, config.seed, config.model.dtype)
    streams, net = checked_network(config, dataset)
    engine = choose_run_engine(config, dataset, net).engine
    X, y = training_set(config, dataset)
    cfg = config.train.model_copy(update={"max_iterations": 2**62})  # the test counts updates
    augment = augmenter(config, dataset, streams.augment)
    trainer = trainer_for(
        net, X, y, dataset.n_classes, cfg, streams.sampling, augment=augment, engine=engine
    )
    return trainer, engine


def whole_batches(order: np.ndarray, B: int) -> list[np.ndarray]:
    """``order`` cut into batches of ``B`` rows, an epoch's last, smaller batch left out: every
    cost of the test is of the spec's batch size, so of the same noise."""
    return [order[s : s + B] for s in range(0, len(order) - B + 1, B)]


def _batches(trainer: Trainer) -> Iterator[np.ndarray]:
    """The rows of each update, epoch after epoch: an epoch's order drawn as training draws it
    when the previous epoch's whole batches are used up."""
    while True:
        yield from whole_batches(trainer.epoch_order(), trainer.B)


def _update(trainer: Trainer, batch: np.ndarray, lr: float) -> float:
    """One update of ``trainer`` on the rows ``batch`` at rate ``lr``; the batch's cost J (in
    training mode, before the step, plus the L1/L2 penalty), as training records it."""
    trainer.optimizer.lr = lr
    trainer.run_epoch(batch)  # an "epoch" of one batch: one update, on either engine
    return trainer.epoch_cost(batch)
