"""The lockstep engine: K training runs of networks of the same shape, stepped as one.

Each run keeps its own ``Trainer`` (``loop.py``): its network, optimizer, random generators,
history and stopping rules, exactly as when it trains alone. Only the epoch itself is shared:
a ``Stack`` copies the K networks into one network whose arrays have a leading axis of K
(``Network(stack=K)``), the same layer code computes all K forward and backward passes with
batched matrix products (``(K, m, n) @ (K, n, h)``), and one optimizer updates the (K, P)
theta, with one learning rate (and L1 / L2 weight) per network as a column. At the end of every
epoch the rows go back to the K networks, and each Trainer records, checks and snapshots its
own run. So run k sees the samples its solo run would see (its own generator draws its order),
and ends with the weights of its solo run, bit for bit: np.matmul computes each (m, n) @ (n, h)
of a stack as it computes one alone (NumPy 2.4 with OpenBLAS here; tests/test_lockstep.py checks
it), and every element-wise step is the same IEEE operation.

Why it pays: a tiny network's step is ~25 NumPy calls whose cost is their fixed overhead, so K
networks in one call each cost little more than one. Measured (``make bench``, section lockstep,
one thread): a 2-5-1 single-sample stack of 64 trained 22.8x faster than the 64 runs one after
another; for a 784-64-10 MLP with batches of 64 the stack is slower (0.7x): there the matrix
products dominate and the stack gathers every member's batch.

What a stack needs to share: layer sizes and kinds, dtype, the optimizer and its
hyper-parameters other than lr, batch size, sampling, max_iterations and the size of the
training set (every run then takes the same number of steps per epoch, so Adam's step count t is
one number). ``stack_key`` says which runs can go together. Dropout, batch norm, convolutions
and augmentation are not stacked (their randomness or state is per network): such runs train
alone.

A run that stops (eps, early stopping, divergence, its own max_epochs) leaves the stack; the
others go on in a smaller one, rebuilt from their networks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from scratchnn_cli.nn.layers import Activation, Dense
from scratchnn_cli.nn.network import Network
from scratchnn_cli.nn.optim.optimizers import make_optimizer
from scratchnn_cli.nn.regularizers import add_penalty_gradient
from scratchnn_cli.training.loop import Trainer

#: Layer kinds the stack computes (element-wise activations and dense layers)
STACKABLE = (Dense, Activation)


def stackable(trainer: Trainer) -> str | None:
    """Why this run cannot train in a stack (one phrase), or None when it can."""
    for layer in trainer.net.layers:
        if not isinstance(layer, STACKABLE):
            return f"its network has a {layer.kind} layer"
    if trainer.augment is not None:
        return "it augments its images"
    return None


def stack_key(trainer: Trainer) -> tuple[Any, ...]:
    """Runs with equal keys can train in one stack (see the module docstring)."""
    net, cfg = trainer.net, trainer.cfg
    return (
        net.input_shape,
        tuple(layer.describe() for layer in net.layers),
        net.loss.name,
        net.dtype.str,
        cfg.optimizer.name,
        tuple(sorted(cfg.optimizer.hyper().items())),
        trainer.B,
        cfg.batch_size == "full",
        cfg.sampling,
        cfg.max_iterations,
        trainer.N,
        trainer.optimizer.t,
    )


class Stack:
    """K Trainers' networks and optimizer states as one network, for one epoch at a time."""

    def __init__(self, members: Sequence[Trainer]) -> None:
        self.members = list(members)
        first = self.members[0]
        keys = {stack_key(tr) for tr in self.members}
        if len(keys) > 1:
            raise ValueError("these runs cannot share a stack (different shapes or settings)")
        K, net = len(self.members), first.net
        layers = [layer.fresh() for layer in net.layers]
        self.net = Network(layers, type(net.loss)(), net.input_shape, net.dtype, stack=K)
        self.net.theta[...] = np.stack([tr.net.theta for tr in self.members])
        cfg = first.cfg
        self.optimizer = make_optimizer(
            cfg.optimizer.name, [self.net.theta], cfg.lr, **cfg.optimizer.hyper()
        )
        self.optimizer.t = first.optimizer.t
        for name, (arrays, _) in self.optimizer.moments().items():
            member_arrays = [tr.optimizer.moments()[name][0][0] for tr in self.members]
            arrays[0][...] = np.stack(member_arrays)
        self.weights, self.weight_grads = self.net.weights()
        dtype = net.dtype
        self.l1 = np.array([tr.cfg.l1 for tr in self.members], dtype=dtype).reshape(K, 1, 1)
        self.l2 = np.array([tr.cfg.l2 for tr in self.members], dtype=dtype).reshape(K, 1, 1)
        self.regularized = bool(np.any(self.l1) or np.any(self.l2))
        self.X = np.stack([tr.X for tr in self.members])  # (K, N, n_0)
        self.Y = np.stack([tr.Y for tr in self.members])  # (K, N, n_L)
        self.y = np.stack([tr.y for tr in self.members])  # (K, N) labels
        sizes = {None if tr.val is None else len(tr.val[1]) for tr in self.members}
        self.X_val = None  # the validation rows of every member, when they all have as many
        if len(sizes) == 1 and None not in sizes:
            self.X_val, self.y_val, self.Y_val = (
                np.stack([tr.val[i] for tr in self.members]) for i in range(3)
            )
        self.Z_epoch = np.empty((K, *first.Z_epoch.shape), dtype=dtype)
        for k, tr in enumerate(self.members):
            tr.Z_epoch = self.Z_epoch[k]  # each Trainer records its epoch from its own row

    def run_epoch(self, orders: Sequence[np.ndarray]) -> None:
        """One epoch of every member, ``orders[k]`` the sample order member k drew: the same
        updates as ``Trainer.run_epoch``, K at a time; then the rows go back to the members."""
        net, B, Z_epoch = self.net, self.members[0].B, self.Z_epoch
        K = len(self.members)
        order = np.stack(orders)  # (K, n)
        rows = np.arange(K)[:, None]
        X, Y = self.X[rows, order], self.Y[rows, order]  # each member's samples, in its order
        forward, backward, dZ, step = net.forward, net.backward, net.loss.dZ, self.optimizer.step
        grads = [net.dtheta]
        self.optimizer.lr = np.array([tr.optimizer.lr for tr in self.members], float)[:, None]
        l1, l2, regularized = self.l1, self.l2, self.regularized
        weights, weight_grads = self.weights, self.weight_grads
        for s in range(0, order.shape[1], B):
            Z = forward(X[:, s : s + B], True)
            Z_epoch[:, s : s + Z.shape[1]] = Z
            backward(dZ(Z, Y[:, s : s + B]))
            if regularized:
                add_penalty_gradient(weights, weight_grads, l1, l2)
            step(grads)
        n_updates = -(-order.shape[1] // B)
        epoch = self.scores(Z_epoch[:, : order.shape[1]], Y, self.y[rows, order])
        for tr, scores in zip(self.members, epoch, strict=True):
            tr.result.iterations += n_updates
            tr.result.epochs += 1
            tr.epoch_scores = scores
        self.write_back()
        if self.X_val is not None and any(tr.evaluates() for tr in self.members):
            Z_val = net.forward(self.X_val)  # every member's validation logits, as logits() would
            val = self.scores(Z_val, self.Y_val, self.y_val)
            for tr, scores in zip(self.members, val, strict=True):
                tr.val_scores = scores if tr.evaluates() else None  # eval_every may differ

    def scores(self, Z: np.ndarray, Y: np.ndarray, y: np.ndarray) -> list[tuple[float, float]]:
        """(cost, accuracy) of each member, as ``Trainer.scores`` gives them, in a few calls:
        Z and Y are (K, m, k), y (K, m)."""
        loss = self.net.loss
        costs = loss.costs(Z, Y).mean(axis=-1)
        accuracies = (loss.predict(Z) == y).mean(axis=-1)
        return [(float(c), float(a)) for c, a in zip(costs, accuracies, strict=True)]

    def write_back(self) -> None:
        """Copy each row of the stack (weights, optimizer moments, t) into its member."""
        moments = self.optimizer.moments()
        for k, tr in enumerate(self.members):
            tr.net.theta[...] = self.net.theta[k]
            tr.optimizer.t = self.optimizer.t
            for name, (arrays, _) in tr.optimizer.moments().items():
                arrays[0][...] = moments[name][0][0][k]


def train_lockstep(
    trainers: Sequence[Trainer], on_done: Callable[[Trainer], None] | None = None
) -> None:
    """Train every run to its end, the runs of one ``stack_key`` in one stack; ``on_done(tr)``
    is called as each run finishes (its result final, its last checkpoint saved). On Ctrl-C
    every unfinished run goes back to its last finished epoch (``Trainer.interrupted``) and the
    KeyboardInterrupt goes on."""
    groups: dict[tuple[Any, ...], list[Trainer]] = {}
    for tr in trainers:
        why = stackable(tr)
        if why is not None:
            raise ValueError(f"this run cannot train in lockstep: {why}")
        groups.setdefault(stack_key(tr), []).append(tr)
    for group in groups.values():
        _train_group(group, on_done)


def _train_group(group: list[Trainer], on_done: Callable[[Trainer], None] | None) -> None:
    """``train_lockstep`` for runs of one key."""
    for tr in group:
        tr.start()
    active, stack = list(group), None

    def done(tr: Trainer) -> None:
        tr.result.seconds = tr.elapsed()
        tr.finish(tr.last_good)
        if on_done is not None:
            on_done(tr)

    try:
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is detected per run
            while active:
                orders = {}
                for tr in active:
                    order = tr.next_epoch()
                    if order is None:
                        done(tr)
                    else:
                        orders[id(tr)] = order
                active = [tr for tr in active if id(tr) in orders]
                if not active:
                    break
                if stack is None or stack.members != active:
                    stack = Stack(active)
                stack.run_epoch([orders[id(tr)] for tr in active])
                still = []
                for tr in active:
                    if tr.close_epoch(orders[id(tr)]):
                        done(tr)
                    else:
                        still.append(tr)
                active = still
    except KeyboardInterrupt:
        for tr in active:
            tr.result.seconds = tr.elapsed()
            tr.interrupted(tr.last_good)
        raise
