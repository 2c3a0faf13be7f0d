"""Section ``cnn`` of ``benchmarks/bench.py``: one training epoch of two convolutional networks on
Fashion-MNIST, ours against PyTorch on the CPU, and where an epoch of ours spends its time.

The networks (input 28 x 28 x 1, output dense 10 + softmax cross-entropy, both sides alike):

- ``issue``: conv2d 32 3x3 same -> batchnorm -> relu -> maxpool 2 -> conv2d 64 3x3 same ->
  batchnorm -> relu -> maxpool 2 -> flatten -> dense 128 -> relu -> dropout 0.3 -> dense 10
  (the network of the CNN issue; ``configs/fashion_cnn.yaml`` adds a third conv block);
- ``small``: conv2d 16 3x3 same -> relu -> maxpool 2 -> conv2d 32 3x3 same -> relu -> maxpool 2 ->
  flatten -> dense 10.

What is timed, for 1 and then 2 threads (``threads(n)`` for ours, ``torch.set_num_threads`` for
PyTorch), every number measured in this run:

- ours: ``scratchnn_cli.training.train`` (the trainer users run) inside
  ``scratchnn_cli.nn.threads.threads(n)`` (the layers' work split over n threads, BLAS on one,
  as ``scratchnn train --threads n`` does), Adam lr 0.001, batch 128,
  ``sampling="shuffle"``, one epoch, float32, He initialisation; the epoch time is
  ``result.seconds``, as train() measures it;
- PyTorch on the CPU, when importable: the same layers (``nn.Conv2d(padding=1)``,
  ``nn.BatchNorm2d`` with the same momentum and epsilon, ``nn.MaxPool2d``, ``nn.Dropout``,
  ``nn.Linear``), ``CrossEntropyLoss``, ``torch.optim.Adam`` with its defaults, a loop over
  ``torch.randperm`` index batches of the same samples; once with NCHW tensors (PyTorch's default)
  and once with the model and batches in ``torch.channels_last``. The ratio ours / PyTorch is
  taken against the faster of the two (what PyTorch prefers on this machine).

Each contender first trains a warm-up epoch on a few batches; the timed epochs are run round-robin,
and the best of ``--repeats`` rounds is kept (without ``--repeats``, fewer rounds when they would
pass the plan's time budget: the tables say how many). The goal is judged on the median over the
rounds of ours / the faster PyTorch epoch of the same round: those two run minutes apart, while
this machine's speed can move by 20% from one round to the next.

Then, for ours, on a few batches of the ``issue`` network with each thread count: each layer's
forward and backward, timed by wrapping the layer's methods (a pair of perf_counter calls per
call), against the same-shaped matrix products timed alone (the GEMM floor of the conv and dense
layers); and the peak memory of our epoch, measured with ``tracemalloc`` (NumPy reports its array
buffers to it) around ``train()`` on the full training set, cut to a few updates with
``max_iterations`` (each update allocates the same; the per-sample arrays train() keeps, such as
the one-hot targets and the epoch's logits, are allocated in full). The input images, allocated
before, are not counted.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from mlp import (
    _timed,
    _x,
    best_call_seconds,
    capture_optimizer,
    import_torch,
    load_average,
    n_threads,
    numpy_blas,
    others_load,
    rounds,
)
from rich.console import Console
from rich.table import Table

from scratchnn_cli.config import TrainConfig
from scratchnn_cli.data import load_fashion_mnist
from scratchnn_cli.errors import DataError
from scratchnn_cli.nn.layers import (
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    MaxPool2D,
    ReLU,
)
from scratchnn_cli.nn.network import Network
from scratchnn_cli.nn.optim.optimizers import Optimizer, make_optimizer
from scratchnn_cli.nn.threads import threads as our_threads
from scratchnn_cli.training import train

IMAGE = (28, 28, 1)
N_CLASSES = 10
BATCH = 128
LR = 0.001
DTYPE = np.dtype(np.float32)
THREADS = (1, 2)
SEED = 0
GOAL = 2.0  # ours / PyTorch at most this
BN_MOMENTUM, BN_EPSILON = 0.9, 1e-5  # ours keeps 0.9 of the running statistics: PyTorch's 0.1

OURS = "ours (train())"
TORCH_FORMATS = {"NCHW": "PyTorch NCHW", "channels_last": "PyTorch channels-last"}
BESIDE_PROJECT = Path(__file__).resolve().parents[2] / "shared" / "data"


# --------------------------------------------------------------------------------------------------
# The networks
# --------------------------------------------------------------------------------------------------


def issue_layers() -> list[Layer]:
    return [
        Conv2D(32, 3, padding="same"),
        BatchNorm(BN_MOMENTUM, BN_EPSILON),
        ReLU(),
        MaxPool2D(2),
        Conv2D(64, 3, padding="same"),
        BatchNorm(BN_MOMENTUM, BN_EPSILON),
        ReLU(),
        MaxPool2D(2),
        Flatten(),
        Dense(128),
        ReLU(),
        Dropout(0.3),
    ]


def small_layers() -> list[Layer]:
    return [
        Conv2D(16, 3, padding="same"),
        ReLU(),
        MaxPool2D(2),
        Conv2D(32, 3, padding="same"),
        ReLU(),
        MaxPool2D(2),
        Flatten(),
    ]


def torch_issue(nn: Any) -> list[Any]:
    bn = {"momentum": 1 - BN_MOMENTUM, "eps": BN_EPSILON}
    return [
        nn.Conv2d(1, 32, 3, padding=1),
        nn.BatchNorm2d(32, **bn),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.BatchNorm2d(64, **bn),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(128, N_CLASSES),
    ]


def torch_small(nn: Any) -> list[Any]:
    return [
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, N_CLASSES),
    ]


@dataclass(frozen=True)
class CnnCase:
    name: str
    description: str
    ours_layers: Callable[[], list[Layer]]
    torch_layers: Callable[[Any], list[Any]]


CASES = (
    CnnCase(
        "issue",
        "conv32-bn-relu-pool, conv64-bn-relu-pool, dense128-relu-dropout0.3, dense10",
        issue_layers,
        torch_issue,
    ),
    CnnCase("small", "conv16-relu-pool, conv32-relu-pool, dense10", small_layers, torch_small),
)


def build_ours(case: CnnCase) -> Network:
    return Network.from_layers(
        case.ours_layers(),
        IMAGE,
        N_CLASSES,
        "softmax",
        rng=np.random.default_rng(SEED),
        init="he",
        dtype=DTYPE,
        dropout_rng=np.random.default_rng(SEED + 2),
    )


def ours_config(max_iterations: int = 10**9) -> TrainConfig:
    """Adam, mini-batches of BATCH, shuffled, one epoch (eps = 0: never stops early)."""
    return TrainConfig(
        lr=LR,
        eps=0.0,
        max_iterations=max_iterations,
        max_epochs=1,
        batch_size=BATCH,
        sampling="shuffle",
        optimizer={"name": "adam"},
    )


def rng() -> np.random.Generator:
    return np.random.default_rng(SEED + 1)


# --------------------------------------------------------------------------------------------------
# The plan and the data
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    n_samples: int  # samples of the timed epoch
    repeats: int  # round-robin rounds per thread count, at most
    epochs_budget_s: float  # no new round once the rounds of a thread count would pass this
    warmup_samples: int
    profile_batches: int  # updates of the per-layer breakdown
    memory_batches: int  # updates traced by tracemalloc
    gemm_rounds: int
    gemm_budget_s: float


FULL_PLAN = Plan(
    n_samples=60_000,
    repeats=2,
    epochs_budget_s=150.0,
    warmup_samples=4 * BATCH,
    profile_batches=20,
    memory_batches=3,
    gemm_rounds=10,
    gemm_budget_s=2.0,
)
QUICK_PLAN = Plan(
    n_samples=3 * BATCH,
    repeats=1,
    epochs_budget_s=5.0,
    warmup_samples=BATCH,
    profile_batches=2,
    memory_batches=2,
    gemm_rounds=2,
    gemm_budget_s=0.2,
)


@dataclass
class Data:
    X: np.ndarray  # (N, 28, 28, 1) float32, C-contiguous
    y: np.ndarray  # (N,) int64
    real: bool
    source: str


def load_data(n_samples: int) -> Data:
    """Fashion-MNIST's training images / 255 as float32 when found (``$SCRATCHNN_DATA``, else
    ``../shared/data`` beside the project, else the cache), or uniform random pixels and labels.
    All 60,000 images are kept even for a shorter epoch (the memory check trains on all)."""
    env = {}
    if not os.environ.get("SCRATCHNN_DATA") and BESIDE_PROJECT.is_dir():
        env["SCRATCHNN_DATA"] = str(BESIDE_PROJECT)
    try:
        with mock.patch.dict(os.environ, env):
            images, labels, _, _ = load_fashion_mnist(download=False)
    except DataError as exc:
        n = max(n_samples, 60_000)
        gen = np.random.default_rng(SEED)
        X = gen.random((n, *IMAGE), dtype=np.float32)
        y = gen.integers(0, N_CLASSES, size=n)
        source = f"random uniform pixels and labels (Fashion-MNIST not found: {exc})"
        return Data(X, y, False, source)
    X = np.ascontiguousarray(images.reshape(len(images), *IMAGE), dtype=DTYPE)
    X /= DTYPE.type(255)
    return Data(X, labels.astype(np.int64), True, "Fashion-MNIST training images / 255, float32")


# --------------------------------------------------------------------------------------------------
# One epoch of each implementation
# --------------------------------------------------------------------------------------------------


def ours_epoch(case: CnnCase, data: Data, thread_count: int, n: int) -> float:
    """One epoch of train() on the first n samples, our layers on ``thread_count`` threads
    (``nn/threads.py``); ``result.seconds``."""
    net = build_ours(case)
    with our_threads(thread_count):
        result = train(net, data.X[:n], data.y[:n], N_CLASSES, ours_config(), rng())
    if result.iterations != math.ceil(n / BATCH):
        raise RuntimeError(f"train() did {result.iterations} updates: {result.stop_reason}")
    if net.dtype != DTYPE:
        raise RuntimeError(f"our network trained in {net.dtype}")
    return result.seconds


def build_torch(torch: Any, case: CnnCase, fmt: str) -> Any:
    torch.manual_seed(SEED)
    model = torch.nn.Sequential(*case.torch_layers(torch.nn)).to(torch.float32)
    if fmt == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    return model.train()


def torch_epoch(torch: Any, case: CnnCase, X: Any, y: Any, fmt: str, n: int) -> float:
    """One epoch of a plain PyTorch loop: shuffled index batches, forward, loss, backward, step."""
    model = build_torch(torch, case, fmt)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    X, y = X[:n], y[:n]
    channels_last = fmt == "channels_last"
    start = time.perf_counter()
    order = torch.randperm(n)
    total = 0.0
    for s in range(0, n, BATCH):
        batch = order[s : s + BATCH]
        xb = X[batch]
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), y[batch])
        loss.backward()
        opt.step()
        total += loss.item() * len(batch)  # the epoch's cost, as ours keeps it
    return time.perf_counter() - start


@dataclass
class Contender:
    impl: str
    case: CnnCase
    epoch: Callable[[int], float]
    times: list[float] = field(default_factory=list)  # each round's epoch, in order

    @property
    def best(self) -> float:
        return min(self.times, default=math.inf)


def make_contenders(data: Data, torch: Any | None, thread_count: int) -> list[Contender]:
    contenders = []
    if torch is not None:
        X = torch.from_numpy(data.X).permute(0, 3, 1, 2)  # (N, 1, 28, 28): C = 1, the same bytes
        y = torch.from_numpy(data.y)
    for case in CASES:
        epoch = functools.partial(ours_epoch, case, data, thread_count)
        contenders.append(Contender(OURS, case, epoch))
        if torch is not None:
            for fmt, impl in TORCH_FORMATS.items():
                contenders.append(
                    Contender(impl, case, functools.partial(torch_epoch, torch, case, X, y, fmt))
                )
    return contenders


def time_contenders(
    contenders: Sequence[Contender], plan: Plan, repeats: int, budget_s: float
) -> int:
    """A warm-up epoch each, then round-robin rounds of one epoch each (up to ``repeats``, within
    ``budget_s``); keeps each one's epochs and its best."""
    for c in contenders:
        c.times = []
        c.epoch(plan.warmup_samples)
    n_rounds = 0
    for _ in rounds(repeats, budget_s):
        for c in contenders:
            c.times.append(c.epoch(plan.n_samples))
        n_rounds += 1
    return n_rounds


def paired_ratios(contenders: Sequence[Contender], case: CnnCase) -> list[float]:
    """Per round: our epoch / the faster PyTorch epoch of the same round (minutes apart, so the
    machine's drift between rounds cancels out)."""
    ours = next(c for c in contenders if c.case is case and c.impl == OURS)
    torch_runs = [c for c in contenders if c.case is case and c.impl != OURS]
    if not torch_runs:
        return []
    return [t / min(c.times[i] for c in torch_runs) for i, t in enumerate(ours.times)]


# --------------------------------------------------------------------------------------------------
# Peak memory of our epoch
# --------------------------------------------------------------------------------------------------


def peak_memory(case: CnnCase, data: Data, n_updates: int) -> int:
    """Peak bytes traced by tracemalloc during train() on all the samples, cut to ``n_updates``
    updates, above what was traced when it started (the network is built before)."""
    net = build_ours(case)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = train(net, data.X, data.y, N_CLASSES, ours_config(n_updates), rng())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if result.iterations != n_updates:
        raise RuntimeError(f"train() did {result.iterations} updates: {result.stop_reason}")
    return peak - base


# --------------------------------------------------------------------------------------------------
# Where our epoch goes: each layer's forward and backward
# --------------------------------------------------------------------------------------------------

KINDS = ("conv2d", "maxpool2d", "batchnorm", "dense")  # layer kinds shown apart; the rest lumped
OTHER_LAYERS = "relu/dropout/flatten"
OUTSIDE = ("loss dZ + Adam", "rest of train()")


@dataclass
class LayerTimes:
    label: str
    kind: str  # one of KINDS or OTHER_LAYERS
    output_shape: tuple[int, ...]
    forward: float = 0.0  # seconds per update
    backward: float = 0.0
    gemm_forward: float = math.nan  # the layer's matrix products timed alone, seconds per update
    gemm_backward: float = math.nan


@dataclass
class Profile:
    threads: int
    layers: list[LayerTimes]
    outside: dict[str, float]  # seconds per update
    update: float  # train()'s seconds per update
    n_updates: int
    gemm_rounds: int = 0

    def by_kind(self) -> dict[str, tuple[float, float, float, float]]:
        """kind -> (forward, backward, GEMM forward, GEMM backward), seconds per update."""
        out: dict[str, list[float]] = {}
        for t in self.layers:
            row = out.setdefault(t.kind, [0.0, 0.0, 0.0, 0.0])
            row[0] += t.forward
            row[1] += t.backward
            row[2] += 0.0 if math.isnan(t.gemm_forward) else t.gemm_forward
            row[3] += 0.0 if math.isnan(t.gemm_backward) else t.gemm_backward
        return {k: tuple(v) for k, v in out.items()}  # type: ignore[misc]


def _layer_gemms(
    layer: Layer, m: int, need_dA_prev: bool, gen: np.random.Generator
) -> tuple[list, list]:
    """The forward and backward matrix products of a conv or dense layer for m samples, with
    operands laid out as the layer's code lays them (random values); none for other layers."""

    def arr(*shape: int) -> np.ndarray:
        return gen.random(shape, dtype=DTYPE)

    if isinstance(layer, Conv2D):
        Ho, Wo, F = layer.output_shape
        kh, kw = layer.kernel
        rows, K = m * Ho * Wo, kh * kw * layer.input_shape[2]
        cols, W, dZ = arr(rows, K), arr(K, F), arr(rows, F)
    elif isinstance(layer, Dense):
        rows, K, F = m, layer.input_shape[0], layer.units
        cols, W, dZ = arr(rows, K), arr(K, F), arr(rows, F)
    else:
        return [], []
    forward = [functools.partial(np.matmul, cols, W, out=np.empty((rows, F), DTYPE))]
    backward = [functools.partial(np.matmul, cols.T, dZ, out=np.empty((K, F), DTYPE))]
    if need_dA_prev and isinstance(layer, Conv2D):  # one product per kernel offset (i, j)
        C = layer.input_shape[2]
        W_ij = W.reshape(kh * kw, C, F)
        backward += [functools.partial(np.matmul, dZ, w.T) for w in W_ij]
    elif need_dA_prev:
        backward.append(functools.partial(np.matmul, dZ, W.T, out=np.empty((rows, K), DTYPE)))
    return forward, backward


def profile_layers(case: CnnCase, data: Data, plan: Plan, thread_count: int) -> Profile:
    """Each layer's forward / backward seconds per update, over ``plan.profile_batches`` updates
    of train() (after 2 warm-up updates), and its matrix products timed alone."""
    net = build_ours(case)
    totals: dict[str, float] = defaultdict(float)
    for i, layer in enumerate(net.layers):
        layer.forward = _timed(layer.forward, totals, f"{i} forward")
        layer.backward = _timed(layer.backward, totals, f"{i} backward")
    net.loss.dZ = _timed(net.loss.dZ, totals, OUTSIDE[0])

    def time_steps(opt: Optimizer) -> None:
        opt.step = _timed(opt.step, totals, OUTSIDE[0])

    n = plan.profile_batches
    with capture_optimizer(time_steps):
        with our_threads(thread_count):
            train(net, data.X, data.y, N_CLASSES, ours_config(2), rng())  # warm-up
            totals.clear()
            result = train(net, data.X, data.y, N_CLASSES, ours_config(n), rng())
    if result.iterations != n:
        raise RuntimeError(f"train() did {result.iterations} updates: {result.stop_reason}")
    layers = []
    for i, layer in enumerate(net.layers):
        kind = layer.kind if layer.kind in KINDS else OTHER_LAYERS
        label = layer.describe() if i < len(net.layers) - 1 else f"{layer.describe()} (output)"
        layers.append(
            LayerTimes(
                f"{i}: {label}",
                kind,
                tuple(layer.output_shape),
                totals[f"{i} forward"] / n,
                totals[f"{i} backward"] / n,
            )
        )
    in_layers = sum(t.forward + t.backward for t in layers)
    outside = {OUTSIDE[0]: totals[OUTSIDE[0]] / n}
    outside[OUTSIDE[1]] = result.seconds / n - in_layers - outside[OUTSIDE[0]]
    profile = Profile(thread_count, layers, outside, result.seconds / n, n)

    # The conv and dense layers' GEMMs alone (the first layer computes no dA_prev).
    gen = np.random.default_rng(SEED)
    fns, owners = [], []
    for i, layer in enumerate(net.layers):
        forward, backward = _layer_gemms(layer, BATCH, i > 0, gen)
        fns += forward + backward
        owners += [(i, "forward")] * len(forward) + [(i, "backward")] * len(backward)
    seconds, profile.gemm_rounds = best_call_seconds(fns, plan.gemm_rounds, plan.gemm_budget_s)
    for (i, stage), s in zip(owners, seconds, strict=True):
        t = layers[i]
        if stage == "forward":
            t.gemm_forward = (0.0 if math.isnan(t.gemm_forward) else t.gemm_forward) + s
        else:
            t.gemm_backward = (0.0 if math.isnan(t.gemm_backward) else t.gemm_backward) + s
    return profile


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------


def _best_torch(contenders: Sequence[Contender], case: CnnCase) -> Contender | None:
    torch_rows = [c for c in contenders if c.case is case and c.impl != OURS]
    return min(torch_rows, key=lambda c: c.best) if torch_rows else None


def results_table(
    threads: int, n_rounds: int, n: int, contenders: Sequence[Contender], torch_ok: bool
) -> Table:
    plural = "s" if threads > 1 else ""
    table = Table(
        title=f"{threads} thread{plural}: one epoch of {n:,} images, float32 Adam, batch {BATCH}, "
        f"seconds (best of {n_rounds} round{'s' if n_rounds > 1 else ''}); ours / PyTorch: "
        "against the faster PyTorch layout; the goal is judged on the median of the rounds' "
        "ratios (ours / the faster PyTorch of the same round)"
    )
    columns = ("network", "implementation", "epoch s", "images/s", "ours / this", "per round")
    for col in (*columns, "goal"):
        table.add_column(col, justify="left" if col in ("network", "implementation") else "right")
    for case in CASES:
        ours = next(c for c in contenders if c.case is case and c.impl == OURS)
        ref = _best_torch(contenders, case)
        paired = paired_ratios(contenders, case)
        for c in (c for c in contenders if c.case is case):
            if c.impl == OURS:
                vs = ours.best / ref.best if ref is not None else math.nan
                median = statistics.median(paired) if paired else math.nan
                goal = (
                    "n/a"
                    if not math.isfinite(median)
                    else (
                        f"[green]met[/] ({_x(median)} <= {GOAL:g}x)"
                        if median <= GOAL
                        else f"[red]not met[/] ({_x(median)}: {median / GOAL:.2f}x too slow)"
                    )
                )
                rounds_cell = " ".join(f"{r:.2f}" for r in paired)
                cells = (f"{c.best:.2f}", f"{n / c.best:,.0f}", _x(vs), rounds_cell, goal)
            else:
                mark = " (faster)" if c is ref else ""
                cells = (f"{c.best:.2f}", f"{n / c.best:,.0f}", _x(ours.best / c.best) + mark)
                cells += ("", "")
            table.add_row(
                case.name if c is ours else "", c.impl, *cells, style="bold" if c is ours else None
            )
        if not torch_ok:
            table.add_row("", "PyTorch", "not installed", "", "", "", "")
        table.rows[-1].end_section = True
    return table


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}" if math.isfinite(seconds) else ""


def layers_table(profiles: Sequence[Profile]) -> Table:
    table = Table(
        title="Where an update of ours goes, network issue, batch 128: ms per update (mean over "
        f"{profiles[0].n_updates} updates of train()); in brackets the layer's matrix products "
        "timed alone"
    )
    table.add_column("layer", justify="left")
    table.add_column("output", justify="left")
    for p in profiles:
        for stage in ("forward", "backward"):
            table.add_column(f"{stage}, {p.threads}T", justify="right")
        table.add_column(f"% ({p.threads}T)", justify="right")

    def pair(t: float, g: float) -> str:
        return f"{_ms(t)} ({_ms(g)})" if math.isfinite(g) else _ms(t)

    for k, t in enumerate(profiles[0].layers):
        cells = []
        for p in profiles:
            u = p.layers[k]
            cells += [
                pair(u.forward, u.gemm_forward),
                pair(u.backward, u.gemm_backward),
                f"{(u.forward + u.backward) / p.update * 100:.1f}",
            ]
        table.add_row(t.label, "x".join(map(str, t.output_shape)), *cells)
    table.rows[-1].end_section = True
    for name in OUTSIDE:
        cells = []
        for p in profiles:
            cells += [_ms(p.outside[name]), "", f"{p.outside[name] / p.update * 100:.1f}"]
        table.add_row(name, "", *cells, style="dim")
    cells = []
    for p in profiles:
        cells += [_ms(p.update), "", "100.0"]
    table.add_row("update (train())", "", *cells, style="bold")
    return table


def kinds_table(profiles: Sequence[Profile], n_epoch: int) -> Table:
    batches = math.ceil(n_epoch / BATCH)
    table = Table(
        title=f"The same by layer kind: ms per update, and the epoch's seconds ({batches} updates) "
        "it comes to; GEMM: the kind's matrix products timed alone"
    )
    table.add_column("kind", justify="left")
    for p in profiles:
        for col in ("fwd", "bwd", "GEMM", "%", "s/epoch"):
            table.add_column(f"{col}, {p.threads}T", justify="right")
    kinds = [*KINDS, OTHER_LAYERS]
    for kind in kinds:
        cells = []
        for p in profiles:
            f, b, gf, gb = p.by_kind().get(kind, (0.0, 0.0, 0.0, 0.0))
            cells += [
                _ms(f),
                _ms(b),
                _ms(gf + gb) if gf + gb > 0 else "",
                f"{(f + b) / p.update * 100:.1f}",
                f"{(f + b) * batches:.2f}",
            ]
        table.add_row(kind, *cells)
    for name in OUTSIDE:
        cells = []
        for p in profiles:
            s = p.outside[name]
            cells += [_ms(s), "", "", f"{s / p.update * 100:.1f}", f"{s * batches:.2f}"]
        table.add_row(name, *cells, style="dim")
    cells = []
    for p in profiles:
        gemm = sum(v[2] + v[3] for v in p.by_kind().values())
        cells += [_ms(p.update), "", _ms(gemm), "100.0", f"{p.update * batches:.2f}"]
    table.add_row("update", *cells, style="bold", end_section=True)
    return table


def estimate_bytes(case: CnnCase) -> int:
    """The training-memory estimate of ``build.py`` for this network, less the data: the
    weights x (6 + the optimizer's arrays per weight) + 3 x batch x the layers' per-sample
    caches (``cache_per_sample``) and outputs, in bytes."""
    net = build_ours(case)
    moments = make_optimizer("adam", [np.zeros(1)], LR).arrays_per_param()
    per_sample = sum(layer.cache_per_sample() for layer in net.layers[:-1]) + N_CLASSES
    return DTYPE.itemsize * (net.theta.size * (6 + moments) + 3 * BATCH * per_sample)


def memory_table(peaks: dict[str, int], n_updates: int, n_samples: int) -> Table:
    table = Table(
        title=f"Peak memory of our epoch (tracemalloc: NumPy's allocations in train() on "
        f"{n_samples:,} images, cut to {n_updates} updates; the input images not counted)"
    )
    cols = ("network", "peak MiB", "/ 128 samples, KiB", "build.py's estimate MiB")
    for col in cols:
        table.add_column(col, justify="left" if col == "network" else "right")
    for case in CASES:
        peak = peaks[case.name]
        table.add_row(
            case.name,
            f"{peak / 2**20:.1f}",
            f"{peak / BATCH / 2**10:.0f}",
            f"{estimate_bytes(case) / 2**20:.1f}",
        )
    return table


def params_line(torch: Any | None) -> str:
    parts = []
    for case in CASES:
        ours = build_ours(case).theta.size
        s = f"{case.name} {ours:,}"
        if torch is not None:
            theirs = sum(p.numel() for p in build_torch(torch, case, "NCHW").parameters())
            s += " (PyTorch the same)" if theirs == ours else f" ([red]PyTorch {theirs:,}[/])"
        parts.append(s)
    return "trained parameters: " + "; ".join(parts)


# --------------------------------------------------------------------------------------------------
# The section
# --------------------------------------------------------------------------------------------------


def cnn(opts: argparse.Namespace, console: Console) -> None:
    """One epoch of two CNNs: ours against PyTorch, per-layer times and peak memory of ours."""
    plan = QUICK_PLAN if opts.quick else FULL_PLAN
    repeats = opts.repeats or plan.repeats
    budget_s = math.inf if opts.repeats else plan.epochs_budget_s  # --repeats N: all N rounds
    start = time.perf_counter()
    data = load_data(plan.n_samples)
    torch = import_torch()
    n = plan.n_samples
    console.print(
        f"\n[bold]cnn[/]: one training epoch of two CNNs on {n:,} images of 28 x 28 x 1: "
        f"{data.source}. Adam lr {LR}, batch {BATCH} ({math.ceil(n / BATCH)} updates), float32."
    )
    for case in CASES:
        console.print(f"  {case.name}: {case.description}")
    console.print(f"  {params_line(torch)}")
    console.print(
        f"  Each contender trains a warm-up epoch of {plan.warmup_samples:,} images, then one "
        f"epoch per round, round-robin; {repeats} rounds"
        + (
            f" at most (fewer when they would take more than {budget_s:g} s per thread count; "
            "--repeats N runs all N). "
            if math.isfinite(budget_s)
            else ". "
        )
        + f"{os.cpu_count()} CPUs, {load_average()}."
    )
    console.print(f"  NumPy's BLAS (ours): {numpy_blas()}")
    if torch is not None:
        mkldnn = torch.backends.mkldnn.is_available()
        console.print(
            f"  PyTorch {torch.__version__} on the CPU (oneDNN {'on' if mkldnn else 'off'}), "
            "torch.set_num_threads as in the title"
        )
    else:
        console.print("  PyTorch not installed: its rows say so, the goal is n/a")
    if opts.quick:
        console.print(
            f"  [yellow]--quick: {n:,} images, not 60,000: the times are not those of a full "
            "epoch[/]"
        )

    profiles = []
    for threads in THREADS:
        with n_threads(threads, torch):
            contenders = make_contenders(data, torch, threads)
            n_rounds = time_contenders(contenders, plan, repeats, budget_s)
            busy = others_load(threads)
            profiles.append(profile_layers(CASES[0], data, plan, threads))
        console.print(results_table(threads, n_rounds, n, contenders, torch is not None))
        if busy > (os.cpu_count() or 1) - threads:
            console.print(
                f"  [yellow]Other processes kept about {busy:.1f} of the {os.cpu_count()} CPUs "
                f"busy meanwhile: these {threads}-thread times may be inflated; rerun on a quiet "
                "machine to be sure.[/]"
            )
    console.print(layers_table(profiles))
    console.print(kinds_table(profiles, n))
    console.print(
        f"  The GEMMs alone: best of {profiles[0].gemm_rounds} rounds, random operands of the "
        "layers' shapes and layouts (conv: cols @ W, cols.T @ dZ, dZ @ W[i, j].T for each "
        "kernel offset; the first conv computes no dA_prev). "
        f"{load_average()}"
    )
    with n_threads(1, torch):
        peaks = {case.name: peak_memory(case, data, plan.memory_batches) for case in CASES}
    console.print(memory_table(peaks, plan.memory_batches, len(data.X)))
    console.print(f"  [dim]section cnn took {time.perf_counter() - start:.0f} s[/]")
