"""Why didn't it learn? A run folder's evidence read as findings: what was seen (numbers and
epoch), what it usually means, what to try (a ``--set`` to paste).

The evidence is history.csv (costs and accuracies per epoch), diagnostics.csv (the probe's
statistics per layer: ``nn/diagnostics.py``) when the run recorded it, run.json and the spec.
Every rule and threshold is in this module, each with where it comes from; the findings are
ranked, most important first, and "nothing wrong found" is a finding too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from scratchnn_cli.config import ExperimentConfig
from scratchnn_cli.errors import RunFolderError
from scratchnn_cli.nn.diagnostics import initial_cost_reference
from scratchnn_cli.records import DiagnosticsRow, EpochRecord
from scratchnn_cli.runs import RunRecord

#: The initial cost is "far" from ln K above this factor: weights drawn with sigma = 1 on
#: the assignment's nets start at 1-3 x ln K, large ones (sigma 10) at tens of times.
INITIAL_COST_FACTOR = 2.0
#: Vanishing gradients: the first weight layer's gradient norm below this fraction of the last's
#: (Glorot & Bengio 2010 show sigmoid nets whose lower layers' gradients are orders smaller).
VANISHING_RATIO = 1e-3
#: Saturated or dead: more than half a layer's units (or entries) out of play.
SATURATED_SHARE = 0.5
DEAD_SHARE = 0.5
#: Identical hidden units: more than half a layer's units have a twin (the symmetric plateau:
#: units that start equal get equal gradients and stay equal).
TWINS_SHARE = 0.5
#: A plateau: the cost within FLAT_COST of its first value for at least this share of the
#: epochs (and this many): the assignment's circles net sat at ln 2 for millions of steps.
PLATEAU_SHARE = 0.25
PLATEAU_EPOCHS = 10
#: Karpathy's rule of thumb: updates around 1e-3 of the weights; 100x off either way is a sign.
UPDATE_RATIO_HIGH = 1e-1
UPDATE_RATIO_LOW = 1e-5
#: The cost "barely moves": less than 1% from the first epoch to the last.
FLAT_COST = 0.01
#: The cost "rises": its moving average at the end above this factor of its lowest.
RISING_COST = 1.2
#: A run "fitted" its training data at this training accuracy: what a unit does then is not
#: what stopped it learning.
FITTED = 0.9
#: Overfitting: the validation cost at the end above this factor of its best while the
#: training cost kept falling.
OVERFIT_FACTOR = 1.1
#: Underfitting: training accuracy below FITTED at the end, and flat over the last half (less
#: than UNDERFIT_GAIN better than at the half): more of the same will not get it there.
UNDERFIT_GAIN = 0.02


@dataclass(frozen=True)
class Finding:
    """One line of ``scratchnn diagnose``: what was seen, what it usually means, what to try."""

    name: str
    seen: str
    means: str
    to_try: str

    def line(self) -> str:
        tip = f"; try {self.to_try}" if self.to_try else ""
        return f"{self.name}: {self.seen}: {self.means}{tip}"


@dataclass(frozen=True)
class Evidence:
    """What a run folder holds for its diagnosis."""

    record: RunRecord
    config: ExperimentConfig
    history: list[EpochRecord]
    diagnostics: list[DiagnosticsRow] | None  # None: the run has no readable diagnostics.csv
    diagnostics_error: str = ""  # why diagnostics.csv could not be read, if it could not

    @cached_property
    def probes(self) -> dict[int, list[DiagnosticsRow]]:
        """The diagnostics rows by probe epoch, in order."""
        by_epoch: dict[int, list[DiagnosticsRow]] = {}
        for row in self.diagnostics or []:
            by_epoch.setdefault(row.epoch, []).append(row)
        return by_epoch

    @property
    def fitted(self) -> bool:
        """Whether the run ended fitting its training data (accuracy at least FITTED)."""
        return bool(self.history) and self.history[-1].train_accuracy >= FITTED


NOTHING_WRONG = Finding("nothing wrong found", "no rule fired", "the run looks healthy", "")


def diagnose(evidence: Evidence) -> list[Finding]:
    """The findings, most important first ([NOTHING_WRONG] when no rule fires)."""
    found: list[Finding] = []
    for rule in RULES:
        finding = rule(evidence)
        if finding is not None:
            found.append(finding)
    return found or [NOTHING_WRONG]


def missing_evidence(evidence: Evidence) -> str | None:
    """What cannot be judged for lack of diagnostics.csv's probes (a run written before it
    existed, one with ``train.diagnostics: false``, a file that cannot be read or holds no
    probe), else None."""
    if evidence.diagnostics:
        return None
    if evidence.diagnostics_error:
        what = f"diagnostics.csv could not be read ({evidence.diagnostics_error})"
    elif evidence.diagnostics is not None:
        what = "diagnostics.csv holds no probe"
    elif evidence.config.train.diagnostics:
        what = (
            "no diagnostics.csv (a run from before diagnostics, or one that stopped before its "
            "first probe)"
        )
    else:
        what = "no diagnostics.csv (train.diagnostics: false)"
    return (
        f"{what}: judged from history.csv alone; initial cost, gradients, saturated, dead and "
        "identical units not checked"
    )


# --------------------------------------------------------------------------- the rules


def _lr(evidence: Evidence) -> float:
    return evidence.config.train.lr


def _rescaled_weights(evidence: Evidence, factor: float, at_least: float = 0.0) -> str:
    """The ``--set`` that scales the initial weights by ``factor``: model.sigma for normal
    initial weights (at least ``at_least``), else the scaled init xavier."""
    model = evidence.config.model
    if model.init != "normal":
        return "--set model.init=xavier"
    return f"--set model.sigma={max(model.sigma * factor, at_least):g}"


def diverged(evidence: Evidence) -> Finding | None:
    """The run diverged: the learning rate is too high (or the initial weights too large)."""
    stop = evidence.record.stop
    if evidence.record.status != "diverged" or stop is None:
        return None
    to_try = f"--set train.lr={_lr(evidence) / 10:g}"
    return Finding("learning rate too high", stop.reason, "the steps overshoot", to_try)


def smoothed(values: Sequence[float]) -> list[float]:
    """The moving average of ``values`` over a window of a tenth of them (at least 3): an
    epoch's cost is measured on the samples it drew, so single epochs are noisy."""
    window = max(3, len(values) // 10)
    kernel = np.ones(window) / window
    return list(np.convolve(np.asarray(values, dtype=np.float64), kernel, mode="valid"))


def _tracked_cost(history: Sequence[EpochRecord]) -> list[float]:
    """The cost to judge the run by: the validation cost (the same samples every epoch) when
    every epoch has one, else the training cost."""
    val = [r.val_cost for r in history]
    chosen = val if all(v is not None for v in val) else [r.cost for r in history]
    return [float(c) for c in chosen if c is not None and math.isfinite(c)]


def rising_cost(evidence: Evidence) -> Finding | None:
    """Learning rate too high: a cost that rises again after its best (smoothed), or updates
    far above 1e-3 of the weights."""
    lr = _lr(evidence)
    to_try = f"--set train.lr={lr / 10:g}"
    costs = [r.cost for r in evidence.history if math.isfinite(r.cost)]
    if len(costs) >= 10:
        trend = smoothed(costs)
        best, last = min(trend), trend[-1]
        if last > RISING_COST * best and not evidence.fitted:
            seen = f"the cost rose again to {last:.4g} from {best:.4g} (smoothed over epochs)"
            return Finding("learning rate too high", seen, "the steps overshoot", to_try)
    ratios = [r.update_ratio for r in _last_probe(evidence) if r.update_ratio is not None]
    if ratios and max(ratios) > UPDATE_RATIO_HIGH:
        seen = f"update ratio lr*|dW|/|W| {max(ratios):.2g} (about 1e-3 is healthy)"
        return Finding("learning rate too high", seen, "each step rewrites the weights", to_try)
    return None


def initial_cost_far(evidence: Evidence) -> Finding | None:
    """The cost at the initial weights far above ln K: the initial weights are too large."""
    first = evidence.probes.get(0)
    if not first:
        return None
    classes = max(2, len(evidence.record.data.get("classes") or []))
    reference = initial_cost_reference(classes)
    cost = first[0].probe_cost
    if not (math.isfinite(cost) and cost > INITIAL_COST_FACTOR * reference):
        return None
    to_try = _rescaled_weights(evidence, 0.1)
    seen = f"cost {cost:.3g} at the initial weights, against ln {classes} = {reference:.3g}"
    return Finding("initial cost far from ln K", seen, "the initial weights are too large", to_try)


def vanishing_gradients(evidence: Evidence) -> Finding | None:
    """The first weight layer's gradient a tiny fraction of the last's, early in training."""
    rows = _first_probe(evidence)
    weighted = [r for r in rows if r.grad_norm is not None]
    if len(weighted) < 2:
        return None
    epoch = rows[0].epoch
    first, last = weighted[0].grad_norm or 0.0, weighted[-1].grad_norm or 0.0
    if last <= 0 or first / last >= VANISHING_RATIO:
        return None
    seen = f"first layer's gradient {first / last:.1e} of the last layer's (epoch {epoch})"
    to_try = "--set model.activation=relu --set model.init=he"
    return Finding("vanishing gradients", seen, "the lower layers barely learn", to_try)


def _last_probe(evidence: Evidence) -> list[DiagnosticsRow]:
    probes = evidence.probes
    return probes[max(probes)] if probes else []


def _first_probe(evidence: Evidence) -> list[DiagnosticsRow]:
    probes = evidence.probes
    return probes[min(probes)] if probes else []


def _worst(rows: Sequence[DiagnosticsRow], attribute: str) -> DiagnosticsRow | None:
    scored = [r for r in rows if getattr(r, attribute) is not None]
    return max(scored, key=lambda r: getattr(r, attribute)) if scored else None


def saturated_units(evidence: Evidence) -> Finding | None:
    """Most sigmoid / tanh units at the flat ends of their curve (derivative near 0): at the
    initial weights (they cannot learn their way out), or at the end of a run that did not fit
    its training data (a net that learned may well saturate its confident units)."""
    worst = _worst(_first_probe(evidence), "saturated")
    if worst is None or (worst.saturated or 0.0) <= SATURATED_SHARE:
        worst = None if evidence.fitted else _worst(_last_probe(evidence), "saturated")
    if worst is None or (worst.saturated or 0.0) <= SATURATED_SHARE:
        return None
    where = f"layer {worst.layer} ({worst.kind})"
    seen = f"{worst.saturated:.0%} of {where} saturated at epoch {worst.epoch}"
    return Finding(
        "saturated units", seen, "their gradients vanish", _rescaled_weights(evidence, 0.1)
    )


def dead_relus(evidence: Evidence) -> Finding | None:
    """Most ReLU units never positive on the probe: they pass no gradient."""
    worst = _worst(_last_probe(evidence), "dead")
    if worst is None or (worst.dead or 0.0) <= DEAD_SHARE:
        return None
    seen = f"{worst.dead:.0%} of layer {worst.layer}'s units dead at epoch {worst.epoch}"
    to_try = f"--set train.lr={_lr(evidence) / 10:g} or --set model.activation=leaky_relu"
    return Finding("dead ReLUs", seen, "a large step pushed them below zero for good", to_try)


def identical_units(evidence: Evidence) -> Finding | None:
    """Hidden units with the same incoming weights: the symmetric plateau."""
    worst = _worst(_last_probe(evidence), "twins")
    if worst is None or (worst.twins or 0.0) <= TWINS_SHARE:
        return None
    seen = f"{worst.twins:.0%} of layer {worst.layer}'s units have an identical twin"
    to_try = _rescaled_weights(evidence, 10, at_least=0.1)
    return Finding(
        "identical hidden units (symmetric plateau)",
        seen,
        "equal units get equal gradients and stay equal: the layer acts as one unit",
        to_try,
    )


def plateau(evidence: Evidence) -> Finding | None:
    """The cost stuck at its starting value for a long stretch of the run before it moved: the
    plateau of small initial weights (hidden units start nearly alike, the gradient is tiny)."""
    costs = [r.cost for r in evidence.history]
    if len(costs) < PLATEAU_EPOCHS or not math.isfinite(costs[0]) or costs[0] <= 0:
        return None
    stuck = next(
        (i for i, c in enumerate(costs) if not abs(c - costs[0]) < FLAT_COST * costs[0]),
        len(costs),
    )
    if stuck < max(PLATEAU_EPOCHS, PLATEAU_SHARE * len(costs)):
        return None
    seen = f"the cost stayed at {costs[0]:.4g} for the first {stuck} of {len(costs)} epochs"
    faster = f"--set train.lr={_lr(evidence) * 10:g}"
    weights = _rescaled_weights(evidence, 10)
    to_try = f"{weights} or {faster}" if evidence.config.model.init == "normal" else faster
    return Finding(
        "plateau",
        seen,
        "small initial weights: the hidden units start alike and learn slowly",
        to_try,
    )


def learning_rate_too_low(evidence: Evidence) -> Finding | None:
    """Updates tiny against the weights at the start, or a cost that barely moved, in a run
    that did not fit its training data (a converged run's gradients are tiny by rights)."""
    history, lr = evidence.history, _lr(evidence)
    if evidence.fitted:
        return None
    to_try = f"--set train.lr={lr * 10:g}"
    ratios = [r.update_ratio for r in _first_probe(evidence) if r.update_ratio is not None]
    if ratios and max(ratios) < UPDATE_RATIO_LOW:
        seen = f"update ratio lr*|dW|/|W| at most {max(ratios):.1e} (about 1e-3 is healthy)"
        return Finding("learning rate too low", seen, "the weights hardly move", to_try)
    costs = _tracked_cost(history)
    if len(costs) >= 5 and costs[0] > 0 and abs(costs[0] - costs[-1]) < FLAT_COST * costs[0]:
        seen = f"the cost moved {abs(costs[0] - costs[-1]) / costs[0]:.2%} in {len(costs)} epochs"
        return Finding("learning rate too low", seen, "training hardly moves", to_try)
    return None


def overfitting(evidence: Evidence) -> Finding | None:
    """The validation cost rising while the training cost falls."""
    rows = [r for r in evidence.history if r.val_cost is not None and math.isfinite(r.val_cost)]
    if len(rows) < 3:
        return None
    best = min(rows, key=lambda r: r.val_cost)  # every val_cost here is a finite number
    last = rows[-1]
    if best is last or last.val_cost <= OVERFIT_FACTOR * best.val_cost:
        return None
    if not last.cost < best.cost:
        return None
    seen = (
        f"validation cost up from {best.val_cost:.4g} (epoch {best.epoch}) to "
        f"{last.val_cost:.4g} while the training cost fell"
    )
    to_try = "--set train.early_stopping.patience=5"
    return Finding("overfitting", seen, "the network learns the training samples", to_try)


def underfitting(evidence: Evidence) -> Finding | None:
    """Training accuracy low and flat."""
    history = evidence.history
    if len(history) < 4:
        return None
    half, last = history[len(history) // 2], history[-1]
    if evidence.fitted:
        return None
    if last.train_accuracy - half.train_accuracy >= UNDERFIT_GAIN:
        return None
    seen = f"training accuracy {last.train_accuracy:.3f}, flat since epoch {half.epoch}"
    to_try = f"--set train.lr={_lr(evidence) * 10:g} (or a larger network, another optimizer)"
    return Finding("underfitting", seen, "stuck short of fitting its training data", to_try)


#: The rules, most important first: a run that diverged or starts saturated needs that fixed
#: before anything else can be read.
RULES = (
    diverged,
    initial_cost_far,
    vanishing_gradients,
    rising_cost,
    saturated_units,
    dead_relus,
    identical_units,
    plateau,
    learning_rate_too_low,
    underfitting,
    overfitting,
)


def load_evidence(run_dir: Path) -> Evidence:
    """The evidence of a run folder; RunFolderError, one line, when it has none to read."""
    from scratchnn_cli.config import validate_config
    from scratchnn_cli.runs import load_run_info
    from scratchnn_cli.runs.diagnostics import read_diagnostics
    from scratchnn_cli.runs.history import read_history

    raw, record = load_run_info(run_dir)
    config = validate_config(raw, f"{run_dir}/config.yaml")
    history_path = Path(run_dir) / "history.csv"
    if not history_path.is_file():
        raise RunFolderError(f"{run_dir}: no history.csv (the run never finished an epoch)")
    history = read_history(history_path)
    path = Path(run_dir) / "diagnostics.csv"
    diagnostics, error = None, ""
    if path.is_file():
        try:
            diagnostics = read_diagnostics(path)
        except RunFolderError as exc:  # the probes are lost, not what the history shows
            error = str(exc).removeprefix(f"{path}: ")
    return Evidence(record, config, history, diagnostics, error)
