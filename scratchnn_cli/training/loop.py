"""The training loop, whole, in one place.

Defaults reproduce the course assignment: single-sample SGD (``batch_size: 1``), each iteration
drawing one random training sample with replacement, then forward, cross-entropy gradient,
backprop and update. An epoch is one pass of N samples (N = training samples): N updates of one
sample, or ceil(N / batch_size) updates of a mini-batch. Its cost J_epoch is the mean of the
per-sample costs seen during the epoch (plus the L1/L2 penalty). Training stops at the first of
max_iterations updates, max_epochs epochs, or a rule of ``stopping.py`` (converged, early
stopping, diverged); Ctrl-C stops it too, at the end of the last finished epoch.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from scratchnn_cli.config import TrainConfig
from scratchnn_cli.nn.engines import CompiledEpoch, choose_engine
from scratchnn_cli.nn.network import Network
from scratchnn_cli.nn.optim.optimizers import make_optimizer
from scratchnn_cli.nn.optim.schedules import Schedule, make_schedule
from scratchnn_cli.nn.regularizers import add_penalty_gradient, penalty
from scratchnn_cli.records import EpochRecord, Snapshot, TrainResult
from scratchnn_cli.training.hooks import Hooks
from scratchnn_cli.training.stopping import EarlyStopping, converged, divergence

Validation = tuple[np.ndarray, np.ndarray]


class Augmentation(Protocol):
    """What the loop needs of an image augmenter: a new batch from a batch, drawn from its
    own generator, whose state a snapshot keeps (``data/augment.py`` is one)."""

    def __call__(self, X: np.ndarray) -> np.ndarray: ...

    def state(self) -> dict[str, Any]: ...

    def set_state(self, state: dict[str, Any]) -> None: ...


def schedule_for(cfg: TrainConfig) -> Schedule:
    """The learning rate of each epoch (0-based), from ``train.lr`` and ``train.lr_schedule``."""
    params = cfg.lr_schedule.params()
    if cfg.lr_schedule.name == "cosine" and params.get("epochs") is None:
        params["epochs"] = cfg.max_epochs
    return make_schedule(cfg.lr_schedule.name, cfg.lr, **params)


def train(
    net: Network,
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    cfg: TrainConfig,
    rng: np.random.Generator,
    validation: Validation | None = None,
    hooks: Hooks | None = None,
    resume_from: Snapshot | None = None,
    result: TrainResult | None = None,
    augment: Augmentation | None = None,
    engine: str | None = None,
) -> TrainResult:
    """Train ``net`` in place on (X, y); ``rng`` draws the samples, ``net.rng`` the dropout masks.

    ``validation`` = (X_val, y_val) is scored every ``cfg.eval_every`` epochs (early stopping
    needs it). Pass ``result`` to keep the history even when training is interrupted (Ctrl-C).
    ``resume_from`` continues from a Snapshot and ends with the same weights as a run that was
    never stopped. ``augment`` transforms every training batch (never validation data).
    ``engine`` (``numpy`` or ``compiled``) runs the epochs; None: as ``cfg.engine`` chooses
    (``nn/engines.py``).
    """
    return trainer_for(
        net, X, y, n_classes, cfg, rng, validation, hooks, resume_from, result, augment, engine
    ).run()


def trainer_for(
    net: Network,
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    cfg: TrainConfig,
    rng: np.random.Generator,
    validation: Validation | None = None,
    hooks: Hooks | None = None,
    resume_from: Snapshot | None = None,
    result: TrainResult | None = None,
    augment: Augmentation | None = None,
    engine: str | None = None,
) -> Trainer:
    """``train``'s Trainer, ready but not run."""
    trainer = Trainer(net, X, y, n_classes, cfg, rng, validation, hooks or Hooks(), result)
    trainer.augment = augment  # before restore: the snapshot holds its generator's state
    trainer.use_engine(engine)
    if resume_from is not None:
        trainer.restore(resume_from)
    return trainer


class Trainer:
    """The state of one training run; ``run()`` is the loop."""

    def __init__(
        self,
        net: Network,
        X: np.ndarray,
        y: np.ndarray,
        n_classes: int,
        cfg: TrainConfig,
        rng: np.random.Generator,
        validation: Validation | None,
        hooks: Hooks,
        result: TrainResult | None,
    ) -> None:
        self.net, self.cfg, self.rng, self.hooks = net, cfg, rng, hooks
        self.result = result if result is not None else TrainResult()
        self.X = np.ascontiguousarray(X, dtype=net.dtype)
        self.y = y
        self.Y = net.loss.targets(y, n_classes, net.dtype)
        self.N = N = self.X.shape[0]
        self.B = cfg.rows_per_update(N)
        self.val: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if validation is not None and len(validation[1]) > 0:
            X_val, y_val = validation
            X_val = np.ascontiguousarray(X_val, dtype=net.dtype)
            self.val = (X_val, y_val, net.loss.targets(y_val, n_classes, net.dtype))
        # The optimizer sees all weights as one flat vector theta (every layer's arrays are
        # views into it) and the gradients as dtheta, which backward fills in place.
        self.optimizer = make_optimizer(
            cfg.optimizer.name, [net.theta], cfg.lr, **cfg.optimizer.hyper()
        )
        self.lr_at = schedule_for(cfg)
        self.weights, self.weight_grads = net.weights()  # L1 / L2 act on W, not on b
        self.params = net.params()  # [W0, b0, W1, ...]: views into theta, as snapshots store them
        self.Z_epoch = np.empty((N, self.Y.shape[1]), dtype=net.dtype)  # logits of the epoch
        es = cfg.early_stopping
        self.stopper = None
        if es is not None and self.val is not None:
            self.stopper = EarlyStopping(es.monitor, es.patience, es.min_delta)
        self.best_params: list[np.ndarray] | None = None
        self.best_buffers: dict[str, np.ndarray] = {}
        self.J_prev: float | None = None
        self.seconds_before = 0.0
        self.start_time = time.perf_counter()
        self.augment: Augmentation | None = None
        # (cost, accuracy) of the epoch (J before its penalty), when the compiled engine
        # computed them with the epoch
        self.epoch_scores: tuple[float, float] | None = None
        self._rows: tuple[np.ndarray, tuple[list[np.ndarray], ...]] | None = None
        self.engine = "numpy"
        self.compiled: CompiledEpoch | None = None

    def use_engine(self, engine: str | None = None) -> str:
        """Run the epochs with ``engine`` (numpy, compiled, or auto; None: ``cfg.engine``), as
        ``nn/engines.py`` resolves it; returns numpy or compiled. EngineError for compiled on
        what it cannot run."""
        cfg = self.cfg
        augments = self.augment is not None
        choice = choose_engine(engine or cfg.engine, self.net, cfg.optimizer.name, self.B, augments)
        self.engine = choice.engine
        self.compiled = None
        if self.engine == "compiled":
            self.compiled = CompiledEpoch(self.net, self.optimizer, cfg.l1, cfg.l2)
        return self.engine

    # --- snapshots ---------------------------------------------------------------------------

    def restore(self, snap: Snapshot) -> None:
        """Continue from ``snap``: weights, optimizer, random generators, stopping rules."""
        for p, saved in zip(self.params, snap.params, strict=True):
            p[...] = saved
        self.net.load_buffers(snap.buffers)
        self.optimizer.load_state_dict(snap.optimizer)
        self.rng.bit_generator.state = snap.sampling_rng
        if self.net.rng is not None and snap.dropout_rng is not None:
            self.net.rng.bit_generator.state = snap.dropout_rng
        if self.stopper is not None and snap.stopper:
            self.stopper.load_state(snap.stopper)
        if self.augment is not None and snap.augment_rng is not None:
            self.augment.set_state(snap.augment_rng)
        keep_best = self.cfg.early_stopping is not None and self.cfg.early_stopping.restore_best
        if snap.best_params and keep_best:
            self.best_params = [b.copy() for b in snap.best_params]
            self.best_buffers = {k: v.copy() for k, v in snap.best_buffers.items()}
        r = self.result
        r.history[:] = list(snap.history)
        r.epochs, r.iterations = snap.epochs, snap.iterations
        r.best_epoch = snap.stopper.get("best_epoch") if snap.stopper else None
        self.J_prev, self.seconds_before = snap.J_prev, snap.seconds

    def elapsed(self) -> float:
        return self.seconds_before + time.perf_counter() - self.start_time

    def snapshot(self) -> Snapshot:
        """The state at the end of the current epoch (copies: training goes on changing it)."""
        return Snapshot(
            epochs=self.result.epochs,
            iterations=self.result.iterations,
            seconds=self.elapsed(),
            J_prev=self.J_prev,
            params=[p.copy() for p in self.params],
            optimizer=self.optimizer.state_dict(),
            sampling_rng=self.rng.bit_generator.state,
            dropout_rng=self.net.rng.bit_generator.state if self.net.rng is not None else None,
            history=self.result.history,  # shared, not copied: see save() below
            stopper=self.stopper.state() if self.stopper is not None else None,
            best_params=[b.copy() for b in self.best_params] if self.best_params else None,
            best_buffers={k: v.copy() for k, v in self.best_buffers.items()},
            buffers=self.net.buffers(),
            augment_rng=self.augment.state() if self.augment is not None else None,
        )

    def save(self, snap: Snapshot) -> None:
        """Hand ``snap`` to the checkpoint hook, with a copy of the history as it is now."""
        if self.hooks.on_checkpoint is not None:
            self.hooks.on_checkpoint(replace(snap, history=list(self.result.history)))

    def set_weights(self, arrays: list[np.ndarray], buffers: dict[str, np.ndarray]) -> None:
        """Go back to saved weights and the layers' state (running statistics) saved with them."""
        for p, saved in zip(self.params, arrays, strict=True):
            p[...] = saved
        self.net.load_buffers(buffers)

    # --- one epoch ---------------------------------------------------------------------------

    def epoch_order(self) -> np.ndarray:
        """The sample indices of the next epoch, cut to the updates left in max_iterations."""
        cfg, N = self.cfg, self.N
        if cfg.batch_size == "full":
            order = np.arange(N)
        elif cfg.sampling == "random":
            order = self.rng.integers(0, N, size=N)  # with replacement, as the assignment
        else:
            order = self.rng.permutation(N)
        n_updates = min(math.ceil(N / self.B), cfg.max_iterations - self.result.iterations)
        return order[: min(N, n_updates * self.B)]

    def sample_rows(self) -> tuple[list[np.ndarray], ...]:
        """X, Y and the epoch's logits as lists of (1, n) row views, made once: indexing a list
        is ~10x cheaper than slicing an array, which single-sample SGD would do 3x per step."""
        if self._rows is None or self._rows[0] is not self.Z_epoch:
            rows = tuple(list(M[:, None]) for M in (self.X, self.Y, self.Z_epoch))
            self._rows = (self.Z_epoch, rows)
        return self._rows[1]

    def run_epoch(self, order: np.ndarray) -> None:
        """One update per batch of ``order``: forward, dZ = (A - Y) / m, backprop, step."""
        self.epoch_scores = None  # (J, accuracy): the compiled kernel computes them on the way
        if self.compiled is not None:  # the same formulas as loops, compiled (nn/compiled.py)
            self.epoch_scores = self.compiled.run(self.X, self.Y, order, self.B, self.Z_epoch)
        else:
            self.run_epoch_numpy(order)
        self.result.iterations += math.ceil(len(order) / self.B)
        self.result.epochs += 1

    def run_epoch_numpy(self, order: np.ndarray) -> None:
        """``run_epoch`` with the NumPy layers: forward, loss, backward and the optimizer's step,
        one call each per batch."""
        net, X, Y, B, Z_epoch = self.net, self.X, self.Y, self.B, self.Z_epoch
        forward, backward, dZ, step = net.forward, net.backward, net.loss.dZ, self.optimizer.step
        grads = [net.dtheta]
        l1, l2 = self.cfg.l1, self.cfg.l2
        regularized = l1 > 0 or l2 > 0
        weights, weight_grads = self.weights, self.weight_grads
        augment = self.augment

        def update(Xb: np.ndarray, Yb: np.ndarray, Z_out: np.ndarray) -> None:
            if augment is not None:
                Xb = augment(Xb)
            Z = forward(Xb, True)
            Z_out[...] = Z  # the logits, for the epoch's cost and accuracy
            backward(dZ(Z, Yb))
            if regularized:
                add_penalty_gradient(weights, weight_grads, l1, l2)
            step(grads)

        if B == 1:  # the assignment's single-sample SGD: each sample a (1, n) view, no copies
            X_rows, Y_rows, Z_rows = self.sample_rows()
            for t, i in enumerate(order.tolist()):
                update(X_rows[i], Y_rows[i], Z_rows[t])
        elif len(order) == self.N and self.cfg.batch_size == "full":
            update(X, Y, Z_epoch)
        else:
            for s in range(0, len(order), B):
                batch = order[s : s + B]
                update(X[batch], Y[batch], Z_epoch[s : s + B])

    def scores(self, Z: np.ndarray, Y: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(cost J, accuracy) of logits Z against targets Y and labels y."""
        return self.net.loss.cost(Z, Y), float(np.mean(self.net.loss.predict(Z) == y))

    def evaluates(self) -> bool:
        """Whether the epoch just finished is scored on the validation split."""
        return self.val is not None and self.result.epochs % self.cfg.eval_every == 0

    def epoch_cost(self, order: np.ndarray) -> float:
        """J_epoch of the epoch just run on ``order``: the mean cost of its batches' logits (in
        training mode, before each step), plus the L1/L2 penalty of the weights now."""
        if self.epoch_scores is not None:
            J = self.epoch_scores[0]
        else:
            J = self.net.loss.cost(self.Z_epoch[: len(order)], self.Y[order])
        if self.cfg.l1 > 0 or self.cfg.l2 > 0:
            J += penalty(self.weights, self.cfg.l1, self.cfg.l2)
        return float(J)

    def epoch_accuracy(self, order: np.ndarray) -> float:
        """The share of the epoch's samples its batches' logits predicted right."""
        if self.epoch_scores is not None:
            return self.epoch_scores[1]
        predicted = self.net.loss.predict(self.Z_epoch[: len(order)])
        return float(np.mean(predicted == self.y[order]))

    def record(self, order: np.ndarray, lr: float) -> EpochRecord:
        """The epoch's row: J_epoch (+ penalty), train accuracy, and validation when due."""
        net = self.net
        J, train_acc = self.epoch_cost(order), self.epoch_accuracy(order)
        val_cost = val_acc = None
        if self.evaluates():
            X_val, y_val, Y_val = self.val
            val_cost, val_acc = self.scores(net.logits(X_val), Y_val, y_val)
        return EpochRecord(
            epoch=self.result.epochs,
            iteration=self.result.iterations,
            cost=J,
            train_accuracy=train_acc,
            lr=lr,
            seconds=self.elapsed(),
            val_cost=val_cost,
            val_accuracy=val_acc,
        )

    # --- stopping ----------------------------------------------------------------------------

    def stop(self, by: str, reason: str) -> bool:
        self.result.stopped_by, self.result.stop_reason = by, reason
        return True

    def budget_spent(self) -> bool:
        cfg, r = self.cfg, self.result
        if r.iterations >= cfg.max_iterations:
            return self.stop("max_iterations", f"reached max_iterations = {cfg.max_iterations:,}")
        if cfg.max_epochs is not None and r.epochs >= cfg.max_epochs:
            return self.stop("max_epochs", f"reached max_epochs = {cfg.max_epochs}")
        return False

    def early_stop(self, record: EpochRecord) -> bool:
        """Track the best validation score; stop when patience ran out (restoring the best)."""
        stopper, es = self.stopper, self.cfg.early_stopping
        if stopper is None or record.val_cost is None:
            return False
        if stopper.improved(record):
            self.result.best_epoch = record.epoch
            if es.restore_best:
                self.best_params = [p.copy() for p in self.params]
                self.best_buffers = self.net.buffers()
            return False
        if not stopper.exhausted:
            return False
        restored = ""
        if self.best_params is not None:
            self.set_weights(self.best_params, self.best_buffers)
            restored = f"; restored the weights of epoch {stopper.best_epoch}"
        return self.stop(
            "early_stopping",
            f"early stopping: {stopper.monitor} did not improve by more than "
            f"{stopper.min_delta:g} for {stopper.patience} evaluations "
            f"(best at epoch {stopper.best_epoch}){restored}",
        )

    def end_of_epoch(self, record: EpochRecord, last_good: Snapshot) -> bool:
        """Apply the stopping rules to a finished epoch; True when training stops."""
        why = divergence(record, self.net.theta)
        if why is not None:
            self.set_weights(last_good.params, last_good.buffers)
            return self.stop(
                "diverged",
                f"diverged in epoch {record.epoch}: {why}; weights restored to the end of the "
                "previous epoch (try a lower train.lr or model.sigma)",
            )
        self.result.history.append(record)
        if self.hooks.on_epoch is not None:
            self.hooks.on_epoch(record)
        if self.early_stop(record):
            return True
        if converged(record.cost, self.J_prev, self.cfg.eps):
            gap = abs(record.cost - self.J_prev)
            return self.stop("eps", f"converged: |J - J_prev| = {gap:.3g} < eps = {self.cfg.eps:g}")
        self.J_prev = record.cost
        return False

    def interrupted(self, last_good: Snapshot) -> None:
        """Ctrl-C: back to the end of the last finished epoch, checkpointed as such."""
        r = self.result
        del r.history[last_good.epochs :]  # Ctrl-C may come after an epoch was recorded
        r.stopped_by = "interrupted"
        r.stop_reason = f"interrupted during epoch {last_good.epochs + 1}"
        self.set_weights(last_good.params, last_good.buffers)
        r.epochs, r.iterations = last_good.epochs, last_good.iterations
        self.save(last_good)

    def finish(self, last_good: Snapshot) -> TrainResult:
        """After the loop: the best weights if early stopping kept them, the final checkpoint."""
        r, stopper = self.result, self.stopper
        if (
            self.best_params is not None
            and r.stopped_by in ("eps", "max_iterations", "max_epochs")
            and stopper is not None
            and stopper.best_epoch != r.epochs
        ):
            self.set_weights(self.best_params, self.best_buffers)
            r.stop_reason += f"; restored the best weights, of epoch {stopper.best_epoch}"
        r.stop_reason += f" (after {r.epochs} epochs, {r.iterations:,} updates)"
        if self.hooks.on_checkpoint is not None:
            self.save(self.snapshot() if r.stopped_by != "diverged" else last_good)
        return r

    # --- the loop ----------------------------------------------------------------------------

    def start(self) -> None:
        """Before the first epoch: the clock, and the state every later failure goes back to."""
        self.start_time = time.perf_counter()
        self.last_good = self.snapshot()  # end of the last finished epoch: divergence, Ctrl-C
        self.last_saved = time.monotonic()

    def next_epoch(self) -> np.ndarray | None:
        """The sample order of the next epoch, its learning rate set; None when the budget
        (max_iterations, max_epochs) is spent."""
        if self.budget_spent():
            return None
        self.optimizer.lr = self.lr_at(self.result.epochs)
        return self.epoch_order()

    def close_epoch(self, order: np.ndarray) -> bool:
        """After ``run_epoch(order)``: record it, apply the stopping rules, snapshot it and
        checkpoint when due. True when training stops."""
        if self.end_of_epoch(self.record(order, self.optimizer.lr), self.last_good):
            return True
        self.last_good = self.snapshot()
        every = self.hooks.checkpoint_every
        if (every is not None and self.result.epochs % every == 0) or (
            every is None and time.monotonic() - self.last_saved >= self.hooks.checkpoint_seconds
        ):
            self.save(self.last_good)
            self.last_saved = time.monotonic()
        return False

    def run(self) -> TrainResult:
        self.start()
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # divergence is detected
                while (order := self.next_epoch()) is not None:
                    self.run_epoch(order)
                    if self.close_epoch(order):
                        break
        except KeyboardInterrupt:
            self.interrupted(self.last_good)
            raise
        finally:
            self.result.seconds = self.elapsed()
        return self.finish(self.last_good)
