"""The training loop, whole, in one place.

Defaults reproduce the course assignment: single-sample SGD (``batch_size: 1``), each iteration
drawing one random training sample with replacement, then forward, cross-entropy gradient,
backprop and update. An epoch is one pass of N samples (N = training samples): N updates of one
sample, or ceil(N / batch_size) updates of a mini-batch. Its cost J_epoch is the mean of the
per-sample costs seen during the epoch (plus the L1/L2 penalty). Training stops at the first of:

- converged:      |J_epoch - J_previous_epoch| < eps;
- max_iterations: that many updates (or ``max_epochs`` epochs);
- early stopping: the validation score stopped improving for ``patience`` evaluations;
- diverged:       the cost or a weight is no longer a finite number (last good weights kept).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from scratchnn_cli.config import TrainConfig
from scratchnn_cli.nn.network import Network
from scratchnn_cli.nn.optim.optimizers import make_optimizer
from scratchnn_cli.nn.optim.schedules import make_schedule
from scratchnn_cli.nn.regularizers import add_penalty_gradient, penalty


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

    ``stopped_by`` is one of: eps, max_iterations, max_epochs, early_stopping, diverged.
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
    the weights, the optimizer's state, both random generators, the stopping rules' state and
    the history. A checkpoint on disk is one of these (see ``runs.write_checkpoint``)."""

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


EpochCallback = Callable[[EpochRecord], None]
SnapshotCallback = Callable[[Snapshot], None]


def schedule_for(cfg: TrainConfig) -> Callable[[int], float]:
    """The learning rate of each epoch (0-based), from ``train.lr`` and ``train.lr_schedule``."""
    s = cfg.lr_schedule
    params = {
        "constant": {},
        "step": {"drop": s.drop, "every": s.every},
        "exponential": {"gamma": s.gamma},
        "cosine": {"lr_min": s.lr_min, "total_epochs": s.epochs or cfg.max_epochs},
    }[s.name]
    return make_schedule(s.name, cfg.lr, **params)


class _EarlyStopping:
    """Tracks the best validation score; says when ``patience`` evaluations brought nothing."""

    def __init__(self, monitor: str, patience: int, min_delta: float) -> None:
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.sign = 1.0 if monitor == "val_cost" else -1.0  # minimise cost, maximise accuracy
        self.best = math.inf
        self.best_epoch = 0
        self.waited = 0

    def improved(self, record: EpochRecord) -> bool:
        value = self.sign * getattr(record, self.monitor)
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.waited = value, record.epoch, 0
            return True
        self.waited += 1
        return False

    @property
    def exhausted(self) -> bool:
        return self.waited >= self.patience


def train(
    net: Network,
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    cfg: TrainConfig,
    rng: np.random.Generator,
    on_epoch: EpochCallback | None = None,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    dropout_rng: np.random.Generator | None = None,
    result: TrainResult | None = None,
    resume_from: Snapshot | None = None,
    on_checkpoint: SnapshotCallback | None = None,
    checkpoint_every: int | None = None,
    checkpoint_seconds: float = 30.0,
) -> TrainResult:
    """Train ``net`` in place on (X, y); ``rng`` drives the sampling, ``dropout_rng`` the masks.

    (X_val, y_val) is scored every ``cfg.eval_every`` epochs (needed by early stopping).
    Pass ``result`` to keep the history even when training is interrupted (Ctrl-C).
    ``on_checkpoint`` receives a Snapshot every ``checkpoint_every`` epochs (or, when that is
    None, every ``checkpoint_seconds``), at the end, and on Ctrl-C (the last finished epoch's,
    before the KeyboardInterrupt goes on). ``resume_from`` continues from such a snapshot and
    ends with the same weights as a run that was never stopped.
    """
    result = result if result is not None else TrainResult()
    N = X.shape[0]
    B = N if cfg.batch_size == "full" else min(cfg.batch_size, N)
    updates_per_epoch = math.ceil(N / B)
    X = np.ascontiguousarray(X, dtype=net.dtype)
    Y = net.loss.targets(y, n_classes, net.dtype)
    has_val = X_val is not None and y_val is not None and len(y_val) > 0
    if has_val:
        X_val = np.ascontiguousarray(X_val, dtype=net.dtype)
        Y_val = net.loss.targets(y_val, n_classes, net.dtype)

    # The optimizer sees all weights as one flat vector theta (W, b of every layer are views
    # into it) and the gradients as dtheta, which backward fills in place.
    flat_params, grads = [net.theta], [net.dtheta]
    params = net.params()  # [W0, b0, W1, ...]: views into theta, as snapshots store them
    weights = [layer.W for layer in net.layers]  # penalties act on W, not on b
    weight_grads = [layer.dW for layer in net.layers]
    optimizer = make_optimizer(cfg.optimizer.name, flat_params, cfg.lr, **cfg.optimizer.hyper())
    lr_at = schedule_for(cfg)
    l1, l2 = cfg.l1, cfg.l2
    regularized = l1 > 0 or l2 > 0
    drop_rng = dropout_rng if net.dropout > 0 else None
    forward, backward, gradient, step = net.forward, net.backward, net.loss.dZ, optimizer.step
    Z_epoch = np.empty((N, Y.shape[1]), dtype=net.dtype)  # logits seen this epoch, for J_epoch
    stopper = None
    if cfg.early_stopping is not None and has_val:
        es = cfg.early_stopping
        stopper = _EarlyStopping(es.monitor, es.patience, es.min_delta)
    best_params: list[np.ndarray] | None = None
    J_prev: float | None = None
    seconds_before = 0.0
    if resume_from is not None:
        snap = resume_from
        for p, saved in zip(params, snap.params, strict=True):
            p[...] = saved
        optimizer.load_state_dict(snap.optimizer)
        rng.bit_generator.state = snap.sampling_rng
        if dropout_rng is not None and snap.dropout_rng is not None:
            dropout_rng.bit_generator.state = snap.dropout_rng
        if stopper is not None and snap.stopper and snap.stopper["monitor"] == stopper.monitor:
            for key in ("best", "best_epoch", "waited"):  # patience, min_delta: from cfg
                setattr(stopper, key, snap.stopper[key])
        best_params = [b.copy() for b in snap.best_params] if snap.best_params else None
        result.history[:] = list(snap.history)
        result.epochs, result.iterations = snap.epochs, snap.iterations
        result.best_epoch = snap.stopper.get("best_epoch") if snap.stopper else None
        J_prev, seconds_before = snap.J_prev, snap.seconds

    def snapshot() -> Snapshot:
        """The state at the end of the current epoch (copies: training goes on changing it)."""
        return Snapshot(
            epochs=result.epochs,
            iterations=result.iterations,
            seconds=seconds_before + time.perf_counter() - start_time,
            J_prev=J_prev,
            params=[p.copy() for p in params],
            optimizer=optimizer.state_dict(),
            sampling_rng=rng.bit_generator.state,
            dropout_rng=dropout_rng.bit_generator.state if dropout_rng is not None else None,
            history=result.history,  # shared, not copied: see on_checkpoint below
            stopper=dict(stopper.__dict__) if stopper is not None else None,
            best_params=[b.copy() for b in best_params] if best_params is not None else None,
        )

    def update(Xb: np.ndarray, Yb: np.ndarray, start: int) -> None:
        """One update on a batch: forward, record Z, dZ = (A - Y) / m, backprop, step."""
        Z = forward(Xb, drop_rng)
        Z_epoch[start : start + Z.shape[0]] = Z
        backward(gradient(Z, Yb))
        if regularized:
            add_penalty_gradient(weights, weight_grads, l1, l2)
        step(grads)

    def stop(by: str, reason: str) -> None:
        result.stopped_by, result.stop_reason = by, reason

    start_time = time.perf_counter()
    last_good = snapshot()  # end of the last finished epoch: divergence and Ctrl-C go back here
    last_saved = time.monotonic()
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is detected, not warned
            while True:
                if result.iterations >= cfg.max_iterations:
                    stop("max_iterations", f"reached max_iterations = {cfg.max_iterations:,}")
                    break
                if cfg.max_epochs is not None and result.epochs >= cfg.max_epochs:
                    stop("max_epochs", f"reached max_epochs = {cfg.max_epochs}")
                    break
                optimizer.lr = lr = lr_at(result.epochs)
                if cfg.batch_size == "full":
                    order = np.arange(N)
                elif cfg.sampling == "random":
                    order = rng.integers(0, N, size=N)
                else:
                    order = rng.permutation(N)
                n_updates = min(updates_per_epoch, cfg.max_iterations - result.iterations)
                n_seen = min(N, n_updates * B)
                order = order[:n_seen]
                if B == 1:  # the assignment's single-sample SGD: slices, no copies
                    for t, i in enumerate(order.tolist()):
                        update(X[i : i + 1], Y[i : i + 1], t)
                elif n_seen == N and cfg.batch_size == "full":
                    update(X, Y, 0)
                else:
                    for s in range(0, n_seen, B):
                        batch = order[s : s + B]
                        update(X[batch], Y[batch], s)
                result.iterations += n_updates
                result.epochs += 1

                J = net.loss.cost(Z_epoch[:n_seen], Y[order])
                if regularized:
                    J += penalty(weights, l1, l2)
                train_acc = float(np.mean(net.loss.predict(Z_epoch[:n_seen]) == y[order]))
                val_cost = val_acc = None
                if has_val and result.epochs % cfg.eval_every == 0:
                    Z_val = net.forward(X_val)
                    val_cost = net.loss.cost(Z_val, Y_val)
                    val_acc = float(np.mean(net.loss.predict(Z_val) == y_val))
                record = EpochRecord(
                    epoch=result.epochs,
                    iteration=result.iterations,
                    cost=J,
                    train_accuracy=train_acc,
                    lr=lr,
                    seconds=seconds_before + time.perf_counter() - start_time,
                    val_cost=val_cost,
                    val_accuracy=val_acc,
                )
                finite = math.isfinite(J) and (val_cost is None or math.isfinite(val_cost))
                if not finite or not all(np.isfinite(p).all() for p in params):
                    for p, good in zip(params, last_good.params, strict=True):
                        p[...] = good
                    stop(
                        "diverged",
                        f"diverged in epoch {record.epoch}: the cost is {J}; weights restored to "
                        "the end of the previous epoch (try a lower train.lr or model.sigma)",
                    )
                    break
                result.history.append(record)
                if on_epoch is not None:
                    on_epoch(record)
                if stopper is not None and val_cost is not None:
                    if stopper.improved(record):
                        result.best_epoch = record.epoch
                        if cfg.early_stopping.restore_best:
                            best_params = [p.copy() for p in params]
                    elif stopper.exhausted:
                        restored = ""
                        if best_params is not None:
                            for p, best in zip(params, best_params, strict=True):
                                p[...] = best
                            restored = f"; restored the weights of epoch {stopper.best_epoch}"
                        stop(
                            "early_stopping",
                            f"early stopping: {stopper.monitor} did not improve by more than "
                            f"{stopper.min_delta:g} for {stopper.patience} evaluations "
                            f"(best at epoch {stopper.best_epoch}){restored}",
                        )
                        break
                if J_prev is not None and abs(J - J_prev) < cfg.eps:
                    stop(
                        "eps",
                        f"converged: |J - J_prev| = {abs(J - J_prev):.3g} < eps = {cfg.eps:g}",
                    )
                    break
                J_prev = J
                last_good = snapshot()
                if on_checkpoint is not None and (
                    (checkpoint_every is not None and result.epochs % checkpoint_every == 0)
                    or (
                        checkpoint_every is None
                        and time.monotonic() - last_saved >= checkpoint_seconds
                    )
                ):
                    on_checkpoint(replace(last_good, history=list(result.history)))
                    last_saved = time.monotonic()
    except KeyboardInterrupt:
        del result.history[last_good.epochs :]  # Ctrl-C may come after an epoch was recorded
        result.stopped_by = "interrupted"
        result.stop_reason = f"interrupted during epoch {last_good.epochs + 1}"
        for p, good in zip(params, last_good.params, strict=True):
            p[...] = good  # the weights at the end of the last finished epoch, as checkpointed
        result.epochs, result.iterations = last_good.epochs, last_good.iterations
        if on_checkpoint is not None:  # the interrupted epoch was never added to the history
            on_checkpoint(replace(last_good, history=list(result.history)))
        raise
    finally:
        result.seconds = seconds_before + time.perf_counter() - start_time
    if (
        best_params is not None
        and result.stopped_by in ("eps", "max_iterations", "max_epochs")
        and stopper is not None
        and stopper.best_epoch != result.epochs
    ):
        for p, best in zip(params, best_params, strict=True):
            p[...] = best
        result.stop_reason += f"; restored the best weights, of epoch {stopper.best_epoch}"
    result.stop_reason += f" (after {result.epochs} epochs, {result.iterations:,} updates)"
    if on_checkpoint is not None:
        final = snapshot() if result.stopped_by != "diverged" else last_good
        on_checkpoint(replace(final, history=list(result.history)))
    return result
