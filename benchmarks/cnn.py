"""Section ``cnn`` of ``bench.py``: one training epoch (Adam, batch 128, float32) of two CNNs, ours
(``train()`` inside ``threads(n)``, as ``scratchnn train --threads n`` runs it) against PyTorch in
NCHW and channels-last with 1 and 2 threads; then, for ours, each layer's forward and backward
against its matrix products timed alone, and the peak memory of an epoch (``tracemalloc``)."""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import common
import numpy as np
from common import BATCH, N_CLASSES, OURS, SEED, Budget, Contender, Epoch, count, new_table, ratio
from rich.console import Console
from rich.table import Table

from scratchnn_cli.config import TrainConfig
from scratchnn_cli.nn import layers as L
from scratchnn_cli.nn.network import Network
from scratchnn_cli.nn.optim.optimizers import Optimizer, make_optimizer
from scratchnn_cli.nn.threads import threads as our_threads
from scratchnn_cli.training import train

LR = 0.001
DTYPE = np.dtype(np.float32)
GOAL = 2.0  # ours / PyTorch at most this
BN_MOMENTUM, BN_EPSILON = 0.9, 1e-5  # ours keeps 0.9 of the running statistics: PyTorch's 0.1
TORCH_FORMATS = {"NCHW": "PyTorch NCHW", "channels_last": "PyTorch channels-last"}

FULL_BUDGET = Budget(60_000, 2, 150.0, 4 * BATCH, 10, 2.0, profile_batches=20, memory_batches=3)
QUICK_BUDGET = Budget(3 * BATCH, 1, 5.0, BATCH, 2, 0.2, profile_batches=2, memory_batches=2)


# --- The networks ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvBlock:
    filters: int
    batchnorm: bool


@dataclass(frozen=True)
class CnnCase:
    """Conv blocks (conv 3x3 same [-> batchnorm] -> relu -> maxpool 2), then an optional dense
    hidden layer (-> relu -> dropout 0.3), then dense 10."""

    blocks: tuple[ConvBlock, ...]
    dense: int | None = None

    @property
    def name(self) -> str:
        parts = [f"conv{b.filters}" for b in self.blocks]
        return "-".join(parts + ([f"dense{self.dense}"] if self.dense else []))

    @property
    def description(self) -> str:
        parts = [f"conv{b.filters}-{'bn-' if b.batchnorm else ''}relu-pool" for b in self.blocks]
        if self.dense:
            parts.append(f"dense{self.dense}-relu-dropout0.3")
        return ", ".join([*parts, f"dense{N_CLASSES}"])

    def ours_layers(self) -> list[L.Layer]:
        layers: list[L.Layer] = []
        for b in self.blocks:
            bn = [L.BatchNorm(BN_MOMENTUM, BN_EPSILON)] if b.batchnorm else []
            layers += [L.Conv2D(b.filters, 3, padding="same"), *bn, L.ReLU(), L.MaxPool2D(2)]
        layers.append(L.Flatten())
        if self.dense:
            layers += [L.Dense(self.dense), L.ReLU(), L.Dropout(0.3)]
        return layers

    def torch_layers(self, nn: Any) -> list[Any]:
        layers, channels, side = [], 1, 28
        for b in self.blocks:
            layers.append(nn.Conv2d(channels, b.filters, 3, padding=1))
            if b.batchnorm:
                layers.append(nn.BatchNorm2d(b.filters, momentum=1 - BN_MOMENTUM, eps=BN_EPSILON))
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
            channels, side = b.filters, side // 2
        layers.append(nn.Flatten())
        features = channels * side * side
        if self.dense:
            layers += [nn.Linear(features, self.dense), nn.ReLU(), nn.Dropout(0.3)]
            features = self.dense
        return [*layers, nn.Linear(features, N_CLASSES)]


CASES = (
    CnnCase((ConvBlock(32, True), ConvBlock(64, True)), dense=128),
    CnnCase((ConvBlock(16, False), ConvBlock(32, False))),
)


def our_network(case: CnnCase) -> Network:
    rng, drop = np.random.default_rng(SEED), np.random.default_rng(SEED + 2)  # weights, dropout
    layers = case.ours_layers()
    return Network.from_layers(
        layers, (28, 28, 1), N_CLASSES, "softmax", rng=rng, init="he", dtype=DTYPE, dropout_rng=drop
    )


def adam(updates: int = 10**9) -> TrainConfig:
    """Adam, shuffled batches, one epoch or ``updates`` updates."""
    return common.train_config("adam", LR, updates=updates)


def torch_network(torch: Any, case: CnnCase, fmt: str) -> Any:
    torch.manual_seed(SEED)
    model = torch.nn.Sequential(*case.torch_layers(torch.nn)).to(torch.float32)
    if fmt == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    return model.train()


# --- One epoch of each implementation, and the peak memory of ours --------------------------------
def ours_epoch(case: CnnCase, data: common.Data, thread_count: int, n: int) -> Epoch:
    """One epoch of train() on the first n samples, our layers on ``thread_count`` threads."""
    net = our_network(case)
    with our_threads(thread_count):
        result = train(net, data.X[:n], data.y[:n], N_CLASSES, adam(), common.sample_rng())
    common.expect_updates(result, math.ceil(n / BATCH))
    if net.dtype != DTYPE:
        raise RuntimeError(f"our network trained in {net.dtype}")
    return Epoch(result.seconds, net.dtype)


def pytorch_epoch(torch: Any, case: CnnCase, X: Any, y: Any, fmt: str, n: int) -> Epoch:
    model = torch_network(torch, case, fmt)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    return Epoch(common.torch_epoch(torch, model, opt, X[:n], y[:n], fmt == "channels_last"))


def make_contenders(data: common.Data, torch: Any | None, thread_count: int) -> list[Contender]:
    contenders = []
    if torch is not None:
        X = torch.from_numpy(data.X).permute(0, 3, 1, 2)  # (N, 1, 28, 28): C = 1, the same bytes
        y = torch.from_numpy(data.y)
    for case in CASES:
        epoch = functools.partial(ours_epoch, case, data, thread_count)
        contenders.append(Contender(OURS, case, epoch))
        for fmt, impl in TORCH_FORMATS.items() if torch is not None else ():
            epoch = functools.partial(pytorch_epoch, torch, case, X, y, fmt)
            contenders.append(Contender(impl, case, epoch))
    return contenders


def paired_ratios(contenders: Sequence[Contender], case: CnnCase) -> list[float]:
    """Per round: our epoch / the faster PyTorch epoch of the same round (minutes apart, so the
    machine's drift between rounds cancels out)."""
    ours = next(c for c in contenders if c.case is case and c.impl == OURS)
    theirs = [c for c in contenders if c.case is case and c.impl != OURS]
    if not theirs:
        return []
    return [run.seconds / min(c.runs[i].seconds for c in theirs) for i, run in enumerate(ours.runs)]


def peak_memory(case: CnnCase, data: common.Data, n_updates: int) -> int:
    """Peak bytes traced by tracemalloc during train() on all the samples, cut to ``n_updates``
    updates, above what was traced when it started (the network is built before)."""
    net = our_network(case)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        result = train(net, data.X, data.y, N_CLASSES, adam(n_updates), common.sample_rng())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    common.expect_updates(result, n_updates)
    return peak - base


def estimate_bytes(case: CnnCase) -> int:
    """``assembly.py``'s training-memory estimate, less the data: weights x (6 + the optimizer's
    arrays per weight) + 3 x batch x the layers' per-sample caches and outputs, in bytes."""
    net = our_network(case)
    moments = make_optimizer("adam", [np.zeros(1)], LR).arrays_per_param()
    per_sample = sum(layer.cache_per_sample() for layer in net.layers[:-1]) + N_CLASSES
    return DTYPE.itemsize * (net.theta.size * (6 + moments) + 3 * BATCH * per_sample)


# --- Where our update goes: each layer's forward and backward -------------------------------------
KINDS = ("conv2d", "maxpool2d", "batchnorm", "dense")  # layer kinds shown apart; the rest lumped
GEMM_KINDS = ("conv2d", "dense")
OTHER_LAYERS = "relu/dropout/flatten"
OUTSIDE = ("loss dZ + Adam", "rest of train()")


@dataclass
class LayerTimes:
    """One layer's seconds per update, and those of its matrix products timed alone."""

    label: str
    kind: str  # one of KINDS or OTHER_LAYERS
    output_shape: tuple[int, ...]
    forward: float
    backward: float
    gemm_forward: float = 0.0
    gemm_backward: float = 0.0


@dataclass
class Profile:
    threads: int
    layers: list[LayerTimes]
    outside: dict[str, float]  # seconds per update
    update: float  # train()'s seconds per update
    n_updates: int
    gemm_rounds: int = 0

    def by_kind(self) -> dict[str, list[float]]:
        """kind -> [forward, backward, GEMM forward + backward], seconds per update."""
        out: dict[str, list[float]] = {}
        for t in self.layers:
            row = out.setdefault(t.kind, [0.0, 0.0, 0.0])
            row[0] += t.forward
            row[1] += t.backward
            row[2] += t.gemm_forward + t.gemm_backward
        return out


def layer_gemms(
    layer: L.Layer, need_dA_prev: bool, gen: np.random.Generator
) -> tuple[list[Callable[[], Any]], list[Callable[[], Any]]]:
    """The forward and backward matrix products of a conv or dense layer for a batch, with
    operands laid out as the layer's code lays them (random values); none for other layers."""
    if isinstance(layer, L.Conv2D):
        Ho, Wo, F = layer.output_shape
        kh, kw = layer.kernel
        rows, K = BATCH * Ho * Wo, kh * kw * layer.input_shape[2]
    elif isinstance(layer, L.Dense):
        rows, K, F = BATCH, layer.input_shape[0], layer.units
    else:
        return [], []
    cols, W, dZ = (gen.random(shape, dtype=DTYPE) for shape in ((rows, K), (K, F), (rows, F)))
    forward = [functools.partial(np.matmul, cols, W, out=np.empty((rows, F), DTYPE))]
    backward = [functools.partial(np.matmul, cols.T, dZ, out=np.empty((K, F), DTYPE))]
    if need_dA_prev and isinstance(layer, L.Conv2D):  # one product per kernel offset (i, j)
        W_ij = W.reshape(kh * kw, layer.input_shape[2], F)
        backward += [functools.partial(np.matmul, dZ, w.T) for w in W_ij]
    elif need_dA_prev:
        backward.append(functools.partial(np.matmul, dZ, W.T, out=np.empty((rows, K), DTYPE)))
    return forward, backward


def profile_layers(case: CnnCase, data: common.Data, budget: Budget, thread_count: int) -> Profile:
    """Each layer's forward / backward seconds per update, over ``budget.profile_batches`` updates
    of train() (after 2 warm-up updates), and its matrix products timed alone."""
    net = our_network(case)
    totals: dict[str, float] = defaultdict(float)
    for i, layer in enumerate(net.layers):
        layer.forward = common.timed(layer.forward, totals, f"{i} forward")
        layer.backward = common.timed(layer.backward, totals, f"{i} backward")
    net.loss.dZ = common.timed(net.loss.dZ, totals, OUTSIDE[0])

    def time_steps(opt: Optimizer) -> None:
        opt.step = common.timed(opt.step, totals, OUTSIDE[0])

    n = budget.profile_batches
    with common.capture_optimizer(time_steps), our_threads(thread_count):
        train(net, data.X, data.y, N_CLASSES, adam(updates=2), common.sample_rng())  # warm-up
        totals.clear()
        result = train(net, data.X, data.y, N_CLASSES, adam(updates=n), common.sample_rng())
    common.expect_updates(result, n)
    layers = []
    for i, layer in enumerate(net.layers):
        kind = layer.kind if layer.kind in KINDS else OTHER_LAYERS
        label = layer.describe() + (" (output)" if i == len(net.layers) - 1 else "")
        forward, backward = totals[f"{i} forward"] / n, totals[f"{i} backward"] / n
        layers.append(LayerTimes(f"{i}: {label}", kind, layer.output_shape, forward, backward))
    in_layers = sum(t.forward + t.backward for t in layers)
    outside = {OUTSIDE[0]: totals[OUTSIDE[0]] / n}
    outside[OUTSIDE[1]] = result.seconds / n - in_layers - outside[OUTSIDE[0]]
    profile = Profile(thread_count, layers, outside, result.seconds / n, n)

    gen = np.random.default_rng(SEED)
    fns, owners = [], []
    for i, layer in enumerate(net.layers):
        forward, backward = layer_gemms(layer, i > 0, gen)  # the first layer computes no dA_prev
        fns += forward + backward
        owners += [(layers[i], "gemm_forward")] * len(forward)
        owners += [(layers[i], "gemm_backward")] * len(backward)
    seconds, profile.gemm_rounds = common.best_call_seconds(
        fns, budget.gemm_rounds, budget.gemm_budget_s
    )
    for (t, attr), s in zip(owners, seconds, strict=True):
        setattr(t, attr, getattr(t, attr) + s)
    return profile


# --- Tables ---------------------------------------------------------------------------------------
def goal_text(paired: Sequence[float]) -> str:
    if not paired:
        return "n/a"
    median = statistics.median(paired)
    if median <= GOAL:
        return f"[green]met[/] ({ratio(median)} <= {GOAL:g}x)"
    return f"[red]not met[/] ({ratio(median)}: {median / GOAL:.2f}x too slow)"


def results_table(threads: int, n_rounds: int, n: int, contenders: Sequence[Contender]) -> Table:
    table = new_table(
        f"{count(threads, 'thread')}: one epoch of {n:,} images, float32 Adam, batch {BATCH}, "
        f"seconds (best of {count(n_rounds, 'round')}); ours / PyTorch: against the faster "
        "PyTorch layout; the goal is judged on the median of the rounds' ratios (ours / the "
        "faster PyTorch of the same round)",
        ("network", "implementation", "epoch s", "images/s", "ours / this", "per round", "goal"),
        left=("network", "implementation"),
    )
    for case in CASES:
        rows = [c for c in contenders if c.case is case]
        ours, theirs = rows[0], rows[1:]
        ref = min(theirs, key=lambda c: c.seconds, default=None)
        paired = paired_ratios(contenders, case)
        for c in rows:
            cells = [f"{c.seconds:.2f}", f"{n / c.seconds:,.0f}"]
            if c is ours:
                vs = ours.seconds / ref.seconds if ref is not None else math.nan
                cells += [ratio(vs), " ".join(f"{r:.2f}" for r in paired), goal_text(paired)]
                table.add_row(case.name, c.impl, *cells, style="bold")
            else:
                mark = " (faster)" if c is ref else ""
                table.add_row("", c.impl, *cells, ratio(ours.seconds / c.seconds) + mark, "", "")
        if not theirs:
            table.add_row("", "PyTorch", "not installed", "", "", "", "")
        table.rows[-1].end_section = True
    return table


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def share(p: Profile, seconds: float) -> str:
    """``seconds`` as a percentage of the update."""
    return f"{seconds / p.update * 100:.1f}"


def layers_table(profiles: Sequence[Profile]) -> Table:
    columns = ["layer", "output"]
    for p in profiles:
        columns += [f"forward, {p.threads}T", f"backward, {p.threads}T", f"% ({p.threads}T)"]
    table = new_table(
        f"Where an update of ours goes, network {CASES[0].name}, batch {BATCH}: ms per update "
        f"(mean over {profiles[0].n_updates} updates of train()); in brackets the layer's matrix "
        "products timed alone",
        columns,
        left=("layer", "output"),
    )
    for k, t in enumerate(profiles[0].layers):
        cells = []
        for p in profiles:
            u = p.layers[k]
            forward, backward = ms(u.forward), ms(u.backward)
            if u.kind in GEMM_KINDS:
                forward += f" ({ms(u.gemm_forward)})"
                backward += f" ({ms(u.gemm_backward)})"
            cells += [forward, backward, share(p, u.forward + u.backward)]
        table.add_row(t.label, "x".join(map(str, t.output_shape)), *cells)
    table.rows[-1].end_section = True
    for name in OUTSIDE:
        cells = [x for p in profiles for x in (ms(p.outside[name]), "", share(p, p.outside[name]))]
        table.add_row(name, "", *cells, style="dim")
    cells = [x for p in profiles for x in (ms(p.update), "", share(p, p.update))]
    table.add_row("update (train())", "", *cells, style="bold")
    return table


def kinds_table(profiles: Sequence[Profile], n_epoch: int) -> Table:
    batches = math.ceil(n_epoch / BATCH)
    columns = ["kind"]
    for p in profiles:
        columns += [f"{col}, {p.threads}T" for col in ("fwd", "bwd", "GEMM", "%", "s/epoch")]
    table = new_table(
        f"The same by layer kind: ms per update, and the epoch's seconds ({batches} updates) it "
        "comes to; GEMM: the kind's matrix products timed alone",
        columns,
        left=("kind",),
    )
    for kind in (*KINDS, OTHER_LAYERS):
        cells = []
        for p in profiles:
            f, b, g = p.by_kind().get(kind, (0.0, 0.0, 0.0))
            gemm = ms(g) if g > 0 else ""
            cells += [ms(f), ms(b), gemm, share(p, f + b), f"{(f + b) * batches:.2f}"]
        table.add_row(kind, *cells)
    for name in OUTSIDE:
        cells = []
        for p in profiles:
            s = p.outside[name]
            cells += [ms(s), "", "", share(p, s), f"{s * batches:.2f}"]
        table.add_row(name, *cells, style="dim")
    cells = []
    for p in profiles:
        gemm = sum(v[2] for v in p.by_kind().values())
        cells += [ms(p.update), "", ms(gemm), share(p, p.update), f"{p.update * batches:.2f}"]
    table.add_row("update", *cells, style="bold", end_section=True)
    return table


def memory_table(peaks: dict[str, int], n_updates: int, n_samples: int) -> Table:
    table = new_table(
        f"Peak memory of our epoch (tracemalloc: NumPy's allocations in train() on "
        f"{n_samples:,} images, cut to {n_updates} updates; the input images not counted)",
        ("network", "peak MiB", "/ 128 samples, KiB", "assembly.py's estimate MiB"),
        left=("network",),
    )
    for case in CASES:
        peak, estimate = peaks[case.name], estimate_bytes(case)
        sizes = f"{peak / 2**20:.1f}", f"{peak / BATCH / 2**10:.0f}", f"{estimate / 2**20:.1f}"
        table.add_row(case.name, *sizes)
    return table


def params_line(torch: Any | None) -> str:
    parts = []
    for case in CASES:
        ours = our_network(case).theta.size
        part = f"{case.name} {ours:,}"
        if torch is not None:
            theirs = sum(p.numel() for p in torch_network(torch, case, "NCHW").parameters())
            part += " (PyTorch the same)" if theirs == ours else f" ([red]PyTorch {theirs:,}[/])"
        parts.append(part)
    return "trained parameters: " + "; ".join(parts)


# --- The section ----------------------------------------------------------------------------------
def cnn(opts: argparse.Namespace, console: Console) -> None:
    """One epoch of two CNNs: ours against PyTorch, per-layer times and peak memory of ours."""
    budget = QUICK_BUDGET if opts.quick else FULL_BUDGET
    repeats = opts.repeats or budget.repeats
    budget_s = math.inf if opts.repeats else budget.epochs_budget_s  # --repeats N: all N rounds
    start = time.perf_counter()
    data = common.load_data(max(budget.n_samples, 60_000))  # the memory check trains on all of them
    torch = common.import_torch()
    n = budget.n_samples
    console.print(
        f"\n[bold]cnn[/]: one training epoch of two CNNs on {n:,} images of 28 x 28 x 1: "
        f"{data.source}. Adam lr {LR}, batch {BATCH} ({math.ceil(n / BATCH)} updates), float32."
    )
    for case in CASES:
        console.print(f"  {case.name}: {case.description}")
    console.print(f"  {params_line(torch)}")
    aside = "; --repeats N runs all N"
    console.print("  " + common.rounds_note(budget, repeats, budget_s, "images", aside))
    quick = f"{n:,} images, not 60,000: the times are not those of a full epoch"
    common.print_setup(console, torch, "ours", quick if opts.quick else None)

    profiles = []
    for threads in common.THREADS:
        with common.n_threads(threads, torch):
            contenders = make_contenders(data, torch, threads)
            n_rounds = common.time_contenders(contenders, budget, repeats, budget_s)
            warning = common.busy_warning(threads)
            profiles.append(profile_layers(CASES[0], data, budget, threads))
        console.print(results_table(threads, n_rounds, n, contenders))
        if warning:
            console.print(warning)
    console.print(layers_table(profiles))
    console.print(kinds_table(profiles, n))
    console.print(
        f"  The GEMMs alone: best of {profiles[0].gemm_rounds} rounds, random operands of the "
        "layers' shapes and layouts (conv: cols @ W, cols.T @ dZ, dZ @ W[i, j].T for each "
        f"kernel offset; the first conv computes no dA_prev). {common.load_average()}"
    )
    with common.n_threads(1, torch):
        peaks = {case.name: peak_memory(case, data, budget.memory_batches) for case in CASES}
    console.print(memory_table(peaks, budget.memory_batches, len(data.X)))
    console.print(f"  [dim]section cnn took {time.perf_counter() - start:.0f} s[/]")
