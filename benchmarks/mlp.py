"""Section ``mlp`` of ``bench.py``: one training epoch of a 784-256-128-10 ReLU/softmax MLP, batch
128, with 1 and 2 BLAS threads: ours (``train()`` with BLAS's threads, and with 2 threads also as
``scratchnn train --threads 2`` runs it: BLAS on one thread, the rows split over ours) against
``MLPClassifier`` (the time of ``fit``), PyTorch and the GEMM floor (the epoch's matrix products
timed alone); then the float32 Adam subnormal trap, with Adam's flushing on and off."""

from __future__ import annotations

import argparse
import functools
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import common
import numpy as np
from common import BATCH, OURS, SEED, Budget, Contender, Epoch, count, new_table, ratio
from rich.console import Console
from rich.table import Table

from scratchnn_cli.nn.network import Network
from scratchnn_cli.nn.optim.optimizers import Optimizer
from scratchnn_cli.nn.threads import threads as layer_threads
from scratchnn_cli.training import Hooks, train

SIZES = (784, 256, 128, 10)
LR = {"sgd": 0.01, "adam": 0.001}
OPTIMIZER_NAMES = {"sgd": "plain SGD", "adam": "Adam"}
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
TRAP_EPOCHS = 5
SKLEARN, TORCH = "MLPClassifier", "PyTorch"
COMMAND = "ours (train --threads)"  # as ``scratchnn train --threads N`` runs it
#: ours as ``scratchnn train --threads 2`` runs it, float32 plain SGD: at most this x PyTorch
COMMAND_GOAL = 0.8
STAGES = ("forward", "loss gradient", "backward", "optimizer step")

FULL_BUDGET = Budget(60_000, 3, 70.0, 4096, gemm_rounds=30, gemm_budget_s=5.0, trap_repeats=2)
QUICK_BUDGET = Budget(2_000, 1, 5.0, 256, gemm_rounds=5, gemm_budget_s=0.5, trap_repeats=1)

Inputs = dict[np.dtype, np.ndarray]  # the (n, 784) training samples in each dtype
Best = dict[tuple[str, tuple[np.dtype, str]], float]  # (impl, (dtype, optimizer)) -> best seconds


# --- One epoch of each implementation -------------------------------------------------------------
def our_network(dtype: np.dtype) -> Network:
    rng = np.random.default_rng(SEED)
    return Network.from_struct(
        SIZES[0], list(SIZES[1:-1]), SIZES[-1], "relu", "softmax", rng=rng, init="he", dtype=dtype
    )


def ours_epoch(
    X: Inputs, y: np.ndarray, dtype: np.dtype, optimizer: str, n: int, split: int = 0
) -> Epoch:
    """One epoch of train() on the first n samples, its stages timed by wrapping those methods;
    "rest" is what train() does around them (batches, Z, the epoch's cost). ``split`` > 0:
    inside ``threads(split)``, as ``scratchnn train --threads`` runs it."""
    if split:
        with layer_threads(split):
            return ours_epoch(X, y, dtype, optimizer, n)
    net = our_network(dtype)
    totals = dict.fromkeys(STAGES, 0.0)
    net.forward = common.timed(net.forward, totals, "forward")
    net.backward = common.timed(net.backward, totals, "backward")
    net.loss.dZ = common.timed(net.loss.dZ, totals, "loss gradient")

    def time_steps(opt: Optimizer) -> None:
        opt.step = common.timed(opt.step, totals, "optimizer step")

    cfg = common.train_config(optimizer, LR[optimizer])
    with common.capture_optimizer(time_steps):
        result = train(net, X[dtype][:n], y[:n], SIZES[-1], cfg, common.sample_rng())
    common.expect_updates(result, math.ceil(n / BATCH))
    totals["rest"] = result.seconds - sum(totals.values())
    return Epoch(result.seconds, net.dtype, totals)


def sklearn_epoch(X: Inputs, y: np.ndarray, dtype: np.dtype, optimizer: str, n: int) -> Epoch:
    """One epoch of ``MLPClassifier.fit`` (no momentum, no penalty), timed around the call."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=SIZES[1:-1],
        activation="relu",
        solver=optimizer,
        momentum=0.0,
        nesterovs_momentum=False,
        learning_rate_init=LR[optimizer],
        batch_size=BATCH,
        max_iter=1,
        alpha=0.0,
        tol=0.0,
        n_iter_no_change=10**9,
        random_state=SEED,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        clf.fit(X[dtype][:n], y[:n])
        seconds = time.perf_counter() - start
    if clf.n_iter_ != 1:
        raise RuntimeError(f"MLPClassifier ran {clf.n_iter_} epochs")
    return Epoch(seconds, clf.coefs_[0].dtype)


def torch_epoch(torch: Any, X: Any, y: Any, dtype: np.dtype, optimizer: str, n: int) -> Epoch:
    torch.manual_seed(SEED)
    layers: list[Any] = []
    for n_in, n_out in zip(SIZES[:-1], SIZES[1:], strict=True):
        layers += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1]).to(getattr(torch, dtype.name))
    opt_class = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
    opt = opt_class(model.parameters(), lr=LR[optimizer])
    seconds = common.torch_epoch(torch, model, opt, X[dtype][:n], y[:n], channels_last=False)
    return Epoch(seconds, np.dtype(str(next(model.parameters()).dtype).removeprefix("torch.")))


def make_contenders(X: Inputs, y: np.ndarray, torch: Any | None, threads: int) -> list[Contender]:
    """Ours (and, with several threads, ours as the command runs it), MLPClassifier and PyTorch
    (when installed), each case being (dtype, optimizer)."""
    epochs: dict[str, Callable[..., Epoch]] = {
        OURS: functools.partial(ours_epoch, X, y),
        SKLEARN: functools.partial(sklearn_epoch, X, y),
    }
    if threads > 1:
        epochs[COMMAND] = functools.partial(ours_epoch, X, y, split=threads)
    if torch is not None:
        tensors = {dt: torch.from_numpy(X[dt]) for dt in DTYPES}
        epochs[TORCH] = functools.partial(torch_epoch, torch, tensors, torch.from_numpy(y))
    return [
        Contender(impl, (dtype, opt), functools.partial(epoch, dtype, opt))
        for dtype in DTYPES
        for opt in LR
        for impl, epoch in epochs.items()
    ]


# --- The GEMM floor: nothing that computes this epoch with NumPy's BLAS can be faster -------------
@dataclass(frozen=True)
class Gemm:
    """One matrix product of an update, (m x k) @ (k x n), as the network's code lays it out."""

    stage: str  # "forward", "backward dW" or "backward dA"
    layer: int
    m: int
    k: int
    n: int
    count: int  # how many times an epoch computes it

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n

    def call(self, dtype: np.dtype, rng: np.random.Generator) -> Callable[[], Any]:
        """``np.matmul(a, b, out=c)`` on random operands laid out as in Dense.forward/backward:
        forward A @ W, dW = A.T @ dZ (A C-ordered, so a transposed view), dA = dZ @ W.T."""
        m, k, n = self.m, self.k, self.n
        if self.stage == "forward":
            a, b = rng.random((m, k)), rng.random((k, n))
        elif self.stage == "backward dW":
            a, b = rng.random((k, m)).T, rng.random((k, n))
        else:
            a, b = rng.random((m, k)), rng.random((n, k)).T
        a, b = a.astype(dtype, order="K"), b.astype(dtype, order="K")
        return functools.partial(np.matmul, a, b, out=np.empty((m, n), dtype=dtype))


def epoch_gemms(n_samples: int) -> list[Gemm]:
    """Every GEMM shape of an epoch with its count: full batches, then the last partial one
    (the first layer computes no dA)."""
    gemms = []
    for rows, n_batches in ((BATCH, n_samples // BATCH), (n_samples % BATCH, 1)):
        if rows == 0 or n_batches == 0:
            continue
        for layer, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:], strict=True)):
            gemms.append(Gemm("forward", layer, rows, n_in, n_out, n_batches))
            gemms.append(Gemm("backward dW", layer, n_in, rows, n_out, n_batches))
            if layer > 0:
                gemms.append(Gemm("backward dA", layer, rows, n_out, n_in, n_batches))
    return gemms


@dataclass
class Floor:
    """The GEMM floor of one epoch in one dtype: each shape's best time x its count."""

    gemms: list[Gemm]
    seconds_each: list[float]

    def stage_seconds(self, prefix: str = "") -> float:
        pairs = zip(self.gemms, self.seconds_each, strict=True)
        return sum(g.count * t for g, t in pairs if g.stage.startswith(prefix))

    @property
    def seconds(self) -> float:
        return self.stage_seconds()

    @property
    def flops(self) -> int:
        return sum(g.count * g.flops for g in self.gemms)


def measure_floors(budget: Budget, n_samples: int) -> tuple[dict[np.dtype, Floor], int]:
    """The GEMM floor of an epoch of ``n_samples`` in each dtype, and the rounds it took."""
    gemms = epoch_gemms(n_samples)
    rng = np.random.default_rng(SEED)
    fns = [g.call(dt, rng) for dt in DTYPES for g in gemms]
    seconds, n_rounds = common.best_call_seconds(fns, budget.gemm_rounds, budget.gemm_budget_s)
    n = len(gemms)
    return {dt: Floor(gemms, seconds[i * n : (i + 1) * n]) for i, dt in enumerate(DTYPES)}, n_rounds


# --- The float32 Adam subnormal trap --------------------------------------------------------------
@dataclass
class TrapRun:
    """TRAP_EPOCHS epochs of float32 Adam: each epoch's seconds, those of its optimizer steps, and
    the subnormal entries of Adam's moments at the end."""

    epoch_seconds: np.ndarray
    step_seconds: np.ndarray
    subnormals: int
    moments: int


def subnormal_run(X: Inputs, y: np.ndarray, flush: bool) -> TrapRun:
    """TRAP_EPOCHS epochs of float32 Adam; ``flush=False`` turns off the optimizer's flushing."""
    dtype = DTYPES[0]
    totals = {"step": 0.0}
    step_ends = [0.0]

    def on_build(opt: Optimizer) -> None:
        if not flush:
            opt.flush_every = 2**62  # t % flush_every is then never 0
        opt.step = common.timed(opt.step, totals, "step")

    hooks = Hooks(on_epoch=lambda record: step_ends.append(totals["step"]))
    cfg = common.train_config("adam", LR["adam"], epochs=TRAP_EPOCHS)
    with common.capture_optimizer(on_build) as built:
        result = train(
            our_network(dtype), X[dtype], y, SIZES[-1], cfg, common.sample_rng(), hooks=hooks
        )
    ends = [0.0, *(record.seconds for record in result.history)]
    moments = [*built[0].m, *built[0].v]
    tiny = np.finfo(dtype).tiny
    subnormals = sum(int(np.count_nonzero((m != 0) & (np.abs(m) < tiny))) for m in moments)
    return TrapRun(np.diff(ends), np.diff(step_ends), subnormals, sum(m.size for m in moments))


def best_trap_run(runs: Sequence[TrapRun]) -> TrapRun:
    """Per epoch, the fastest of the runs (the same work: same seeds, same data)."""
    epochs = np.min([r.epoch_seconds for r in runs], axis=0)
    steps = np.min([r.step_seconds for r in runs], axis=0)
    return TrapRun(epochs, steps, runs[-1].subnormals, runs[-1].moments)


# --- Tables ---------------------------------------------------------------------------------------
def results_table(threads: int, n_rounds: int, best: Best, floors: dict[np.dtype, Floor]) -> Table:
    table = new_table(
        f"{count(threads, 'BLAS thread')}: one epoch, seconds (best of {count(n_rounds, 'round')})"
        "; a ratio > 1 is slower than the reference",
        ("implementation", "dtype", "optimizer", "epoch s", "/ PyTorch", "/ floor")
        + ("/ MLPClassifier",),
        left=("implementation", "dtype", "optimizer"),
    )
    for dtype in DTYPES:
        floor = floors[dtype].seconds
        for opt in LR:
            case = (dtype, opt)
            for impl in (OURS, COMMAND, TORCH, SKLEARN):
                if impl == COMMAND and threads == 1:
                    continue  # the same as ours: one thread
                cells = (impl, dtype.name, OPTIMIZER_NAMES[opt])
                if (impl, case) not in best:
                    table.add_row(*cells, "PyTorch not installed", "", "", "")
                    continue
                s, torch_s = best[impl, case], best.get((TORCH, case), math.nan)
                ratios = ratio(s / torch_s), ratio(s / floor), ratio(s / best[SKLEARN, case])
                bold = impl in (OURS, COMMAND)
                table.add_row(*cells, f"{s:.3f}", *ratios, style="bold" if bold else None)
        floor_cells = ("GEMM floor", dtype.name, "-", f"{floor:.3f}", "", "1.00x", "")
        table.add_row(*floor_cells, style="dim", end_section=True)
    return table


def goals_table(threads: int, best: Best, floors: dict[np.dtype, Floor]) -> Table:
    """Each goal's cases: the ratio measured, the target, and by how much it is met or missed."""
    ours = {case: s for (impl, case), s in best.items() if impl == OURS}
    pytorch = {case: best.get((TORCH, case), math.nan) for case in ours}
    names = {(dt, opt): f"{OPTIMIZER_NAMES[opt]} {dt.name}" for dt, opt in ours}
    f32_sgd = (DTYPES[0], "sgd")
    rows = [  # goal, case, measured, target, at most (else at least), note
        ("plain SGD float32 at most 1.0x PyTorch's time", "ours / PyTorch, SGD float32")
        + (ours[f32_sgd] / pytorch[f32_sgd], 1.0, True, "")
    ]
    if (COMMAND, f32_sgd) in best:
        goal = f"scratchnn train --threads {threads}: at most {COMMAND_GOAL}x PyTorch's epoch"
        measured = best[COMMAND, f32_sgd] / pytorch[f32_sgd]
        rows.append((goal, "ours / PyTorch, SGD float32", measured, COMMAND_GOAL, True, ""))
    for case, name in names.items():
        vs_floor = ours[case] / floors[case[0]].seconds
        rows.append(("within 1.6x of the floor", f"ours / floor, {name}", vs_floor, 1.6, True, ""))
    for case in ((dt, "adam") for dt in DTYPES):
        goal, name = "Adam at most 1.3x PyTorch's Adam", f"ours / PyTorch, Adam {case[0].name}"
        rows.append((goal, name, ours[case] / pytorch[case], 1.3, True, ""))
    for case, name in names.items():
        sk = best[SKLEARN, case]
        goal = "at least 2x faster than MLPClassifier in the same dtype"
        note = f" (at the floor: {sk / floors[case[0]].seconds:.2f}x)"
        rows.append((goal, f"MLPClassifier / ours, {name}", sk / ours[case], 2.0, False, note))

    table = new_table(
        f"Goals, {count(threads, 'BLAS thread')}",
        ("goal", "case", "measured", "target", "met?", "by how much"),
        left=("goal", "case", "met?", "by how much"),
    )
    previous = None
    for goal, case, measured, target, at_most, note in rows:
        slower = measured / target if at_most else target / measured  # > 1: not met
        if not math.isfinite(measured):
            verdict, margin = "n/a", "PyTorch not installed"
        elif slower <= 1:
            side = "under" if at_most else "over"
            verdict = "[green]met[/]"
            margin = f"{abs(1 - measured / target) * 100:.0f}% {side} the target{note}"
        else:
            verdict, margin = "[red]not met[/]", f"ours must get {slower:.2f}x faster{note}"
        limit = f"{'<=' if at_most else '>='} {target:g}x"
        table.add_row(
            goal if goal != previous else "", case, ratio(measured), limit, verdict, margin
        )
        previous = goal
    return table


def stages_table(
    threads: int, contenders: Sequence[Contender], floors: dict[np.dtype, Floor]
) -> Table:
    table = new_table(
        f"Where the best epoch of ours went, {count(threads, 'BLAS thread')} (seconds; in "
        "brackets the GEMM floor of the stage)",
        ("", "dtype", "optimizer", *STAGES, "rest of train()", "epoch", "epoch - floor"),
        left=("", "dtype", "optimizer"),
    )
    for c in (c for c in contenders if c.impl in (OURS, COMMAND)):
        (dtype, opt), stages, floor = c.case, c.best.stages or {}, floors[c.case[0]]
        cells = []
        for stage in (*STAGES, "rest"):
            gemm = floor.stage_seconds(stage) if stage in ("forward", "backward") else None
            cells.append(f"{stages[stage]:.3f}" + (f" ({gemm:.3f})" if gemm is not None else ""))
        label = "--threads" if c.impl == COMMAND else ""
        epoch = f"{c.seconds:.3f}", f"{c.seconds - floor.seconds:.3f}"
        table.add_row(label, dtype.name, OPTIMIZER_NAMES[opt], *cells, *epoch)
    return table


def gemm_table(floors: dict[np.dtype, Floor]) -> Table:
    table = new_table(
        "The GEMMs of one epoch, each timed alone (best of the rounds)",
        ("GEMM", "count", "dtype", "µs each", "GFLOP/s", "s per epoch"),
        left=("GEMM", "dtype"),
    )
    for dtype, floor in floors.items():
        for g, t in zip(floor.gemms, floor.seconds_each, strict=True):
            label = f"{g.stage} {g.layer + 1}: ({g.m}x{g.k}) @ ({g.k}x{g.n})"
            gflops, per_epoch = f"{g.flops / t / 1e9:.1f}", f"{g.count * t:.3f}"
            table.add_row(label, str(g.count), dtype.name, f"{t * 1e6:.1f}", gflops, per_epoch)
    return table


def trap_table(runs: dict[str, TrapRun], n: int, repeats: int) -> Table:
    epochs = [f"epoch {i + 1} s" for i in range(TRAP_EPOCHS)]
    table = new_table(
        f"float32 Adam on the real images, {TRAP_EPOCHS} epochs of {n:,} samples, 1 thread: the "
        f"subnormal trap (each epoch the best of {count(repeats, 'run')})",
        ("flushing", *epochs, f"{TRAP_EPOCHS} / 1", "Adam steps 1 -> 5, s", "subnormal in m, v"),
        left=("flushing",),
    )
    for flushing, run in runs.items():
        e, st = run.epoch_seconds, run.step_seconds
        cells = [f"{x:.3f}" for x in e] + [ratio(e[-1] / e[0]), f"{st[0]:.3f} -> {st[-1]:.3f}"]
        table.add_row(flushing, *cells, f"{run.subnormals:,} / {run.moments:,}")
    return table


# --- The section ----------------------------------------------------------------------------------
def mlp(opts: argparse.Namespace, console: Console) -> None:
    """One epoch of a 784-256-128-10 MLP: ours against MLPClassifier, PyTorch and the GEMM floor."""
    budget = QUICK_BUDGET if opts.quick else FULL_BUDGET
    repeats, n = opts.repeats or budget.repeats, budget.n_samples
    start = time.perf_counter()
    data = common.load_data(n)
    X = {dt: np.ascontiguousarray(data.X[:n].reshape(n, -1), dtype=dt) for dt in DTYPES}
    y = data.y[:n]
    torch = common.import_torch()
    console.print(
        f"\n[bold]mlp[/]: one training epoch of a {'-'.join(map(str, SIZES))} ReLU/softmax MLP, "
        f"batch {BATCH} ({math.ceil(n / BATCH)} updates, the last of {n % BATCH or BATCH} "
        f"samples), on {n:,} x {SIZES[0]} samples: {data.source}. SGD lr {LR['sgd']}, Adam lr "
        f"{LR['adam']}. " + common.rounds_note(budget, repeats, budget.epochs_budget_s, "samples")
    )
    quick = f"{n:,} samples, not 60,000: the times are not those of a full epoch (the ratios are "
    quick += "comparable)"
    common.print_setup(
        console, torch, "ours, MLPClassifier, the floor", quick if opts.quick else None
    )

    for threads in common.THREADS:
        contenders = make_contenders(X, y, torch, threads)
        with common.n_threads(threads, torch):
            floors, gemm_rounds = measure_floors(budget, n)
            epoch_rounds = common.time_contenders(
                contenders, budget, repeats, budget.epochs_budget_s
            )
        warning = common.busy_warning(threads)
        best = {(c.impl, c.case): c.seconds for c in contenders}
        console.print(results_table(threads, epoch_rounds, best, floors))
        console.print(
            f"  GEMM floor, {count(threads, 'thread')}: {floors[DTYPES[0]].flops / 1e9:.2f} GFLOP "
            f"per epoch (best of {gemm_rounds} rounds of each shape); "
            + "; ".join(
                f"{dt.name} {f.flops / f.seconds / 1e9:.1f} GFLOP/s -> floor {f.seconds:.3f} s"
                for dt, f in floors.items()
            )
            + f". {common.load_average()}"
        )
        kept = {c.case[0].name: str(c.best.weights_dtype) for c in contenders if c.impl == SKLEARN}
        console.print(
            "  MLPClassifier's coefs_ dtype: "
            + ", ".join(f"{k} input -> {v}" for k, v in kept.items())
            + (" (it keeps float32)" if kept.get("float32") == "float32" else " (it upcasts!)")
        )
        for c in contenders:
            if c.best.weights_dtype != c.case[0]:
                console.print(f"  [red]{c.impl} {c.case[0]}: {c.best.weights_dtype} weights[/]")
        if warning:
            console.print(warning)
        console.print(goals_table(threads, best, floors))
        console.print(stages_table(threads, contenders, floors))
        if opts.verbose:
            console.print(gemm_table(floors))

    if data.real:
        subnormal_trap(X, y, torch, budget, console)
    else:
        console.print("  Subnormal trap: skipped, the real Fashion-MNIST images were not found")
    console.print(f"  [dim]section mlp took {time.perf_counter() - start:.0f} s[/]")


def subnormal_trap(
    X: Inputs, y: np.ndarray, torch: Any | None, budget: Budget, console: Console
) -> None:
    """TRAP_EPOCHS epochs of float32 Adam, flushing on (as users run it) and off (the control)."""
    runs: dict[bool, list[TrapRun]] = {True: [], False: []}
    with common.n_threads(1, torch):
        for _ in range(budget.trap_repeats):  # interleaved: a busy spell hits both alike
            for flush, done in runs.items():
                done.append(subnormal_run(X, y, flush))
    on, off = best_trap_run(runs[True]), best_trap_run(runs[False])
    n = len(y)
    console.print(trap_table({"on (as run)": on, "off (control)": off}, n, budget.trap_repeats))
    grew = on.epoch_seconds[-1] / on.epoch_seconds[0]
    console.print(
        f"  With flushing (as users run it), epoch {TRAP_EPOCHS} took "
        f"{on.epoch_seconds[-1]:.3f} s and epoch 1 {on.epoch_seconds[0]:.3f} s: the epoch time "
        f"{'grew' if grew > 1.1 else 'did not grow'} ({grew:.2f}x; under ~10% is noise on a "
        f"shared machine; the GEMM-bound stages, which subnormals do not touch, move as much), "
        f"and its Adam steps took {ratio(on.step_seconds[-1] / on.step_seconds[0])} as long in "
        f"epoch {TRAP_EPOCHS} as in epoch 1. Without flushing, {off.subnormals:,} moment "
        f"entries were subnormal after epoch {TRAP_EPOCHS}, and the Adam steps of epoch "
        f"{TRAP_EPOCHS} took {ratio(off.step_seconds[-1] / off.step_seconds[0])} those of "
        "epoch 1."
    )
