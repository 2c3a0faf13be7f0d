"""Section ``mlp`` of ``benchmarks/bench.py``: one training epoch of a 784-256-128-10 ReLU/softmax
MLP, batch 128, against scikit-learn, PyTorch and the matrix-multiply floor.

What is timed, for 1 and then 2 BLAS threads (``threadpool_limits`` for NumPy and scikit-learn,
``torch.set_num_threads`` for PyTorch), every number measured in this run:

- ours: ``scratchnn_cli.training.loop.train`` (the trainer users run) with ``batch_size=128``,
  ``sampling="shuffle"``, ``max_epochs=1``, plain SGD (lr 0.01) or Adam (lr 0.001), in float32 and
  float64; the epoch time is ``result.seconds``, as train() measures it;
- ``sklearn.neural_network.MLPClassifier``, same architecture, solver sgd (no momentum) or adam,
  ``max_iter=1``: the time of ``fit`` (one epoch plus its input checks and initialisation); its
  weights keep the input's dtype (``coefs_`` is checked and shown);
- PyTorch on the CPU, when importable: ``nn.Linear``/``nn.ReLU``, ``CrossEntropyLoss``,
  ``torch.optim.SGD``/``Adam`` with their defaults, a loop over ``torch.randperm`` index batches;
- the floor: the epoch's 8 GEMM shapes (forward 3, backward dW 3, dA 2: the first layer's dA is
  not needed), each timed alone with NumPy (best of many, operands laid out as the network's
  code lays them: ``A.T @ dZ``, ``dZ @ W.T``), times the number of batches that use it (the last,
  partial batch included). Nothing that computes this network's epoch with NumPy's BLAS can be
  faster.

Each implementation first trains a warm-up epoch on a few thousand samples (first-touch costs:
thread pools, page faults, lazy imports); the timed epochs are then run round-robin, each
implementation once per round, and the best of ``--repeats`` rounds is kept, so that a burst of
work from another process spoils a round, not one implementation's every sample.

Ours' epochs are also split into stages on the way (forward, loss gradient, backward, optimizer
step, the rest of train(): see ``ours_epoch``), shown for its best epoch against the GEMM floor of
each stage. Last, the float32 Adam subnormal trap: five epochs of float32 Adam on the real images
(if present), with the optimizer's subnormal flushing on (as users run it) and, as a control,
off, timing each epoch and counting the subnormal entries left in Adam's moments.

Runs are capped by time budgets (``Plan``): on a busy machine, fewer rounds rather than a longer
run; the tables say how many rounds each number is the best of.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import time
import timeit
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from rich.console import Console
from rich.table import Table
from threadpoolctl import threadpool_info, threadpool_limits

import scratchnn_cli.training.loop as train_module
from scratchnn_cli.config import TrainConfig
from scratchnn_cli.data import load_fashion_mnist
from scratchnn_cli.errors import DataError
from scratchnn_cli.nn.network import Network
from scratchnn_cli.nn.optim.optimizers import Optimizer
from scratchnn_cli.training import Hooks, train

SIZES = (784, 256, 128, 10)
BATCH = 128
LR = {"sgd": 0.01, "adam": 0.001}
OPTIMIZER_NAMES = {"sgd": "plain SGD", "adam": "Adam"}
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
THREADS = (1, 2)
SEED = 0
TRAP_EPOCHS = 5

OURS, SKLEARN, TORCH = "ours (train())", "MLPClassifier", "PyTorch"
# The course data sits beside the project (as the Makefile assumes) unless $SCRATCHNN_DATA says.
BESIDE_PROJECT = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class Plan:
    """How much to run, and the time budgets that keep a busy machine from stretching the run."""

    n_samples: int  # samples of the timed epoch
    repeats: int  # round-robin rounds of epochs per thread count, at most
    epochs_budget_s: float  # no new round once the rounds of a thread count would pass this
    warmup_samples: int
    gemm_rounds: int  # rounds of GEMM timings, at most
    gemm_budget_s: float  # per thread count
    trap_repeats: int  # runs of the subnormal trap check, each with flushing on and off


FULL_PLAN = Plan(
    n_samples=60_000,
    repeats=3,
    epochs_budget_s=70.0,
    warmup_samples=4096,
    gemm_rounds=30,
    gemm_budget_s=5.0,
    trap_repeats=2,
)
QUICK_PLAN = Plan(
    n_samples=2_000,
    repeats=1,
    epochs_budget_s=5.0,
    warmup_samples=256,
    gemm_rounds=5,
    gemm_budget_s=0.5,
    trap_repeats=1,
)


def rounds(max_rounds: int, budget_s: float) -> Iterator[int]:
    """0, 1, ... up to ``max_rounds``, ending early when one more round (as long as the average
    one so far) would end past ``budget_s``; the first round always runs."""
    start = time.perf_counter()
    for i in range(max_rounds):
        if i > 0:
            elapsed = time.perf_counter() - start
            if elapsed + elapsed / i > budget_s:
                return
        yield i


# --------------------------------------------------------------------------------------------------
# The data
# --------------------------------------------------------------------------------------------------


@dataclass
class Data:
    """The first n training samples, as C-contiguous (n, 784) arrays of each dtype."""

    X: dict[np.dtype, np.ndarray]
    y: np.ndarray
    real: bool
    source: str


def load_data(n_samples: int) -> Data:
    """Fashion-MNIST's training images / 255 when the files are found (``$SCRATCHNN_DATA``, else
    ``../shared/data`` beside the project, else the cache), or uniform random pixels and labels."""
    env = {}
    if not os.environ.get("SCRATCHNN_DATA") and BESIDE_PROJECT.is_dir():
        env["SCRATCHNN_DATA"] = str(BESIDE_PROJECT)
    try:
        with mock.patch.dict(os.environ, env):
            images, labels, _, _ = load_fashion_mnist(download=False)
    except DataError as exc:
        rng = np.random.default_rng(SEED)
        X = rng.random((n_samples, SIZES[0]))
        y = rng.integers(0, SIZES[-1], size=n_samples)
        source = f"random uniform pixels and labels (Fashion-MNIST not found: {exc})"
        real = False
    else:
        X = images[:n_samples].reshape(n_samples, -1) / 255.0
        y = labels[:n_samples].astype(np.int64)
        source = "Fashion-MNIST training images / 255"
        real = True
    return Data({dt: np.ascontiguousarray(X, dtype=dt) for dt in DTYPES}, y, real, source)


# --------------------------------------------------------------------------------------------------
# One epoch of each implementation
# --------------------------------------------------------------------------------------------------


def ours_config(optimizer: str, epochs: int = 1) -> TrainConfig:
    """Mini-batch training, shuffled, exactly ``epochs`` epochs (eps = 0: never stops early)."""
    return TrainConfig(
        lr=LR[optimizer],
        eps=0.0,
        max_iterations=10**9,
        max_epochs=epochs,
        batch_size=BATCH,
        sampling="shuffle",
        optimizer={"name": optimizer},
    )


def build_ours(dtype: np.dtype) -> Network:
    return Network.build(
        SIZES[0],
        list(SIZES[1:-1]),
        SIZES[-1],
        activation="relu",
        output="softmax",
        rng=np.random.default_rng(SEED),
        init="he",
        dtype=dtype,
    )


@dataclass
class EpochRun:
    """One timed epoch: its seconds, the dtype the weights were trained in, and (ours only) the
    seconds spent in each stage."""

    seconds: float
    weights_dtype: np.dtype
    stages: dict[str, float] | None = None


def _timed(fn: Callable[..., Any], totals: dict[str, float], key: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - start

    return wrapper


@contextmanager
def capture_optimizer(
    on_build: Callable[[Optimizer], None] | None = None,
) -> Iterator[list[Optimizer]]:
    """Patches train()'s make_optimizer: yields a list that receives the optimizer train() builds,
    after ``on_build`` (if given) has been called on it."""
    built: list[Optimizer] = []
    real = train_module.make_optimizer

    def make(*args: Any, **kwargs: Any) -> Optimizer:
        opt = real(*args, **kwargs)
        if on_build is not None:
            on_build(opt)
        built.append(opt)
        return opt

    with mock.patch.object(train_module, "make_optimizer", make):
        yield built


STAGES = ("forward", "loss gradient", "backward", "optimizer step")


def ours_epoch(data: Data, dtype: np.dtype, optimizer: str, n: int) -> EpochRun:
    """One epoch of train() on the first n samples; ``seconds`` is ``result.seconds``.

    The stages are timed on the way: ``net.forward``, ``net.loss.dZ``, ``net.backward`` and the
    optimizer's ``step`` are wrapped, each call, by a pair of perf_counter calls (about 1.5 µs per
    update in all, under 0.1% of an epoch, counted against ours); "rest" is what train() does
    around them (gathering X[batch] and Y[batch], storing Z, the end-of-epoch cost).
    """
    net = build_ours(dtype)
    totals = dict.fromkeys(STAGES, 0.0)
    net.forward = _timed(net.forward, totals, "forward")
    net.backward = _timed(net.backward, totals, "backward")
    net.loss.dZ = _timed(net.loss.dZ, totals, "loss gradient")

    def time_steps(opt: Optimizer) -> None:
        opt.step = _timed(opt.step, totals, "optimizer step")

    with capture_optimizer(time_steps):
        result = train(net, data.X[dtype][:n], data.y[:n], SIZES[-1], ours_config(optimizer), rng())
    if result.iterations != math.ceil(n / BATCH):
        raise RuntimeError(f"train() did {result.iterations} updates: {result.stop_reason}")
    totals["rest"] = result.seconds - sum(totals.values())
    return EpochRun(result.seconds, net.dtype, totals)


def sklearn_epoch(data: Data, dtype: np.dtype, optimizer: str, n: int) -> EpochRun:
    """One epoch of ``MLPClassifier.fit``, timed around the call; the weights' dtype is that of
    ``coefs_``."""
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
        shuffle=True,
        alpha=0.0,
        tol=0.0,
        n_iter_no_change=10**9,
        random_state=SEED,
    )
    X, y = data.X[dtype][:n], data.y[:n]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        clf.fit(X, y)
        seconds = time.perf_counter() - start
    if clf.n_iter_ != 1:
        raise RuntimeError(f"MLPClassifier ran {clf.n_iter_} epochs")
    return EpochRun(seconds, clf.coefs_[0].dtype)


def import_torch() -> Any | None:
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_epoch(torch: Any, tensors: dict, dtype: np.dtype, optimizer: str, n: int) -> EpochRun:
    """One epoch of a plain PyTorch loop: shuffled index batches, forward, loss, backward, step."""
    nn = torch.nn
    torch.manual_seed(SEED)
    layers: list[Any] = []
    for n_in, n_out in zip(SIZES[:-1], SIZES[1:], strict=True):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    model = nn.Sequential(*layers[:-1]).to(tensors["dtype"][dtype])
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=LR["sgd"])
    else:
        opt = torch.optim.Adam(model.parameters(), lr=LR["adam"])
    loss_fn = nn.CrossEntropyLoss()
    X, y = tensors["X"][dtype][:n], tensors["y"][:n]
    start = time.perf_counter()
    order = torch.randperm(n)
    total = 0.0
    for s in range(0, n, BATCH):
        batch = order[s : s + BATCH]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(X[batch]), y[batch])
        loss.backward()
        opt.step()
        total += loss.item() * len(batch)  # the epoch's cost, as ours and scikit-learn keep it
    seconds = time.perf_counter() - start
    weights = next(model.parameters())
    return EpochRun(seconds, np.dtype(str(weights.dtype).removeprefix("torch.")))


@dataclass
class Contender:
    """One row of the table: an implementation, a dtype, an optimizer, and its best epoch."""

    impl: str
    dtype: np.dtype
    optimizer: str
    epoch: Callable[[int], EpochRun]  # n samples -> one epoch on the first n
    best: EpochRun | None = None

    def run(self, n: int) -> EpochRun:
        return self.epoch(n)

    @property
    def seconds(self) -> float:
        return self.best.seconds if self.best is not None else math.nan


def make_contenders(data: Data, torch: Any | None) -> list[Contender]:
    contenders = []
    tensors = None
    if torch is not None:
        tensors = {
            "dtype": {dt: getattr(torch, dt.name) for dt in DTYPES},
            "X": {dt: torch.from_numpy(data.X[dt]) for dt in DTYPES},
            "y": torch.from_numpy(data.y),
        }
    for dtype in DTYPES:
        for opt in LR:
            contenders.append(
                Contender(OURS, dtype, opt, functools.partial(ours_epoch, data, dtype, opt))
            )
            contenders.append(
                Contender(SKLEARN, dtype, opt, functools.partial(sklearn_epoch, data, dtype, opt))
            )
            if torch is not None:
                contenders.append(
                    Contender(
                        TORCH,
                        dtype,
                        opt,
                        functools.partial(torch_epoch, torch, tensors, dtype, opt),
                    )
                )
    return contenders


@contextmanager
def n_threads(n: int, torch: Any | None) -> Iterator[None]:
    """NumPy's and scikit-learn's BLAS (and any OpenMP pool) limited to n threads; PyTorch too."""
    before = torch.get_num_threads() if torch is not None else 0
    with threadpool_limits(limits=n):
        if torch is not None:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(before)


def time_contenders(contenders: Sequence[Contender], plan: Plan, repeats: int) -> int:
    """A warm-up epoch each, then round-robin rounds of one epoch each (``repeats`` at most, within
    the plan's budget); keeps each one's best. Returns the number of rounds run."""
    for c in contenders:
        c.best = None
        c.run(plan.warmup_samples)
    n_rounds = 0
    for _ in rounds(repeats, plan.epochs_budget_s):
        for c in contenders:
            run = c.run(plan.n_samples)
            if c.best is None or run.seconds < c.best.seconds:
                c.best = run
        n_rounds += 1
    return n_rounds


# --------------------------------------------------------------------------------------------------
# The GEMM floor
# --------------------------------------------------------------------------------------------------


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

    @property
    def label(self) -> str:
        return f"{self.stage} {self.layer + 1}: ({self.m}x{self.k}) @ ({self.k}x{self.n})"

    def operands(self, dtype: np.dtype, rng: np.random.Generator) -> Callable[[], Any]:
        """``np.matmul(a, b, out=c)`` on random operands laid out as in Dense.forward/backward:
        forward A @ W, dW = A.T @ dZ (A C-ordered, so a transposed view), dA = dZ @ W.T."""
        m, k, n = self.m, self.k, self.n
        if self.stage == "forward":
            a, b = rng.random((m, k)), rng.random((k, n))
        elif self.stage == "backward dW":
            a, b = rng.random((k, m)).astype(dtype).T, rng.random((k, n))
        else:
            a, b = rng.random((m, k)), rng.random((n, k)).astype(dtype).T
        a, b = a.astype(dtype, copy=False), b.astype(dtype, copy=False)
        return functools.partial(np.matmul, a, b, out=np.empty((m, n), dtype=dtype))


def epoch_gemms(n_samples: int, batch: int = BATCH, sizes: Sequence[int] = SIZES) -> list[Gemm]:
    """Every GEMM shape of an epoch with its count: full batches, then the last partial one."""
    gemms = []
    for rows, count in ((batch, n_samples // batch), (n_samples % batch, 1)):
        if rows == 0 or count == 0:
            continue
        for layer, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            gemms.append(Gemm("forward", layer, rows, n_in, n_out, count))
            gemms.append(Gemm("backward dW", layer, n_in, rows, n_out, count))
            if layer > 0:
                gemms.append(Gemm("backward dA", layer, rows, n_out, n_in, count))
    return gemms


def best_call_seconds(
    fns: Sequence[Callable[[], Any]], max_rounds: int, budget_s: float, timing_s: float = 0.0005
) -> tuple[list[float], int]:
    """Best time of one call of each function, and the number of rounds run. Each round times
    every function 5 times, each timing about ``timing_s`` long (one call for a slow function);
    short timings let the best of them catch calls that no other process disturbed."""
    timers = [timeit.Timer(fn) for fn in fns]
    numbers = []
    for timer in timers:
        one = min(timer.repeat(repeat=3, number=1))
        numbers.append(max(1, int(timing_s / max(one, 1e-9))))
    best = [math.inf] * len(timers)
    n_rounds = 0
    for _ in rounds(max_rounds, budget_s):
        for i, (timer, number) in enumerate(zip(timers, numbers, strict=True)):
            best[i] = min(best[i], min(timer.repeat(repeat=5, number=number)) / number)
        n_rounds += 1
    return best, n_rounds


@dataclass
class Floor:
    """The GEMM floor of one epoch in one dtype: each shape's best time x its count."""

    dtype: np.dtype
    gemms: list[Gemm]
    seconds_each: list[float]

    @property
    def seconds(self) -> float:
        return sum(g.count * t for g, t in zip(self.gemms, self.seconds_each, strict=True))

    def stage_seconds(self, prefix: str) -> float:
        return sum(
            g.count * t
            for g, t in zip(self.gemms, self.seconds_each, strict=True)
            if g.stage.startswith(prefix)
        )

    @property
    def flops(self) -> int:
        return sum(g.count * g.flops for g in self.gemms)

    @property
    def gflops(self) -> float:
        return self.flops / self.seconds / 1e9


def measure_floors(plan: Plan, n_samples: int) -> tuple[dict[np.dtype, Floor], int]:
    """The GEMM floor of an epoch of ``n_samples`` in each dtype, and the rounds it took."""
    gemms = epoch_gemms(n_samples)
    rng = np.random.default_rng(SEED)
    fns = [g.operands(dt, rng) for dt in DTYPES for g in gemms]
    seconds, n_rounds = best_call_seconds(fns, plan.gemm_rounds, plan.gemm_budget_s)
    floors = {
        dt: Floor(dt, gemms, seconds[i * len(gemms) : (i + 1) * len(gemms)])
        for i, dt in enumerate(DTYPES)
    }
    return floors, n_rounds


# --------------------------------------------------------------------------------------------------
# The float32 Adam subnormal trap
# --------------------------------------------------------------------------------------------------


@dataclass
class TrapRun:
    """TRAP_EPOCHS epochs of float32 Adam: each epoch's seconds and the seconds of its optimizer
    steps (each the best over the repeats), and the subnormal entries of Adam's moments at the
    end."""

    flush: bool
    epoch_seconds: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    subnormals: int = 0
    moments: int = 0

    def merge(self, other: TrapRun) -> TrapRun:
        """Per epoch, the faster of the two runs (the same work: same seeds, same data)."""
        if not self.epoch_seconds:
            return other
        return TrapRun(
            self.flush,
            [min(a, b) for a, b in zip(self.epoch_seconds, other.epoch_seconds, strict=True)],
            [min(a, b) for a, b in zip(self.step_seconds, other.step_seconds, strict=True)],
            other.subnormals,
            other.moments,
        )


def subnormal_run(data: Data, n: int, flush: bool) -> TrapRun:
    """TRAP_EPOCHS epochs of float32 Adam; each epoch's time (as train() times it) and that of its
    optimizer steps, and the subnormal moment entries at the end. ``flush=False`` turns off the
    optimizer's flushing (the control)."""
    dtype = np.dtype(np.float32)
    net = build_ours(dtype)
    totals = {"step": 0.0}
    step_ends = [0.0]

    def on_build(opt: Optimizer) -> None:
        if not flush:
            opt.flush_every = 2**62  # t % flush_every is then never 0
        opt.step = _timed(opt.step, totals, "step")

    with capture_optimizer(on_build) as built:
        result = train(
            net,
            data.X[dtype][:n],
            data.y[:n],
            SIZES[-1],
            ours_config("adam", epochs=TRAP_EPOCHS),
            rng(),
            hooks=Hooks(on_epoch=lambda record: step_ends.append(totals["step"])),
        )
    ends = [0.0, *(record.seconds for record in result.history)]
    run = TrapRun(flush, [float(x) for x in np.diff(ends)], [float(x) for x in np.diff(step_ends)])
    tiny = np.finfo(dtype).tiny
    for moment in (*built[0].m, *built[0].v):
        run.subnormals += int(np.count_nonzero((moment != 0) & (np.abs(moment) < tiny)))
        run.moments += moment.size
    return run


# --------------------------------------------------------------------------------------------------
# The section
# --------------------------------------------------------------------------------------------------


def rng() -> np.random.Generator:
    return np.random.default_rng(SEED + 1)


def _x(value: float) -> str:
    return f"{value:.2f}x" if math.isfinite(value) else "-"


def results_table(
    threads: int,
    n_rounds: int,
    contenders: Sequence[Contender],
    floors: dict[np.dtype, Floor],
    torch_ok: bool,
) -> Table:
    best = {(c.impl, c.dtype, c.optimizer): c.seconds for c in contenders}
    table = Table(
        title=f"{threads} BLAS thread{'s' if threads > 1 else ''}: one epoch, seconds (best of "
        f"{n_rounds} round{'s' if n_rounds > 1 else ''}); a ratio > 1 is slower than the reference"
    )
    for col in (
        "implementation",
        "dtype",
        "optimizer",
        "epoch s",
        "/ PyTorch",
        "/ floor",
        "/ MLPClassifier",
    ):
        table.add_column(
            col, justify="left" if col in ("implementation", "dtype", "optimizer") else "right"
        )
    for dtype in DTYPES:
        floor = floors[dtype]
        for opt in LR:
            torch_s = best.get((TORCH, dtype, opt), math.nan)
            sk_s = best[SKLEARN, dtype, opt]
            for impl in (OURS, TORCH, SKLEARN):
                if impl == TORCH and not torch_ok:
                    table.add_row(
                        TORCH, dtype.name, OPTIMIZER_NAMES[opt], "PyTorch not installed", "", "", ""
                    )
                    continue
                s = best[impl, dtype, opt]
                style = "bold" if impl == OURS else None
                table.add_row(
                    impl,
                    dtype.name,
                    OPTIMIZER_NAMES[opt],
                    f"{s:.3f}",
                    _x(s / torch_s),
                    _x(s / floor.seconds),
                    _x(s / sk_s),
                    style=style,
                )
        table.add_row(
            "GEMM floor",
            dtype.name,
            "-",
            f"{floor.seconds:.3f}",
            "",
            "1.00x",
            "",
            end_section=True,
            style="dim",
        )
    return table


@dataclass
class GoalRow:
    goal: str
    case: str
    measured: float  # the ratio measured
    target: float
    at_most: bool  # True: measured <= target is met; False: measured >= target
    note: str = ""

    @property
    def met(self) -> bool | None:
        if not math.isfinite(self.measured):
            return None
        return self.measured <= self.target if self.at_most else self.measured >= self.target


def goals(contenders: Sequence[Contender], floors: dict[np.dtype, Floor]) -> list[GoalRow]:
    best = {(c.impl, c.dtype, c.optimizer): c.seconds for c in contenders}
    f32 = np.dtype(np.float32)
    torch_sgd = best.get((TORCH, f32, "sgd"), math.nan)
    rows = [
        GoalRow(
            "plain SGD float32 at most 1.0x PyTorch's time",
            "ours / PyTorch, SGD float32",
            best[OURS, f32, "sgd"] / torch_sgd,
            1.0,
            True,
        )
    ]
    for dtype in DTYPES:
        for opt in LR:
            rows.append(
                GoalRow(
                    "within 1.6x of the floor",
                    f"ours / floor, {OPTIMIZER_NAMES[opt]} {dtype.name}",
                    best[OURS, dtype, opt] / floors[dtype].seconds,
                    1.6,
                    True,
                )
            )
    for dtype in DTYPES:
        rows.append(
            GoalRow(
                "Adam at most 1.3x PyTorch's Adam",
                f"ours / PyTorch, Adam {dtype.name}",
                best[OURS, dtype, "adam"] / best.get((TORCH, dtype, "adam"), math.nan),
                1.3,
                True,
            )
        )
    for dtype in DTYPES:
        for opt in LR:
            sk = best[SKLEARN, dtype, opt]
            reachable = sk / floors[dtype].seconds
            rows.append(
                GoalRow(
                    "at least 2x faster than MLPClassifier in the same dtype",
                    f"MLPClassifier / ours, {OPTIMIZER_NAMES[opt]} {dtype.name}",
                    sk / best[OURS, dtype, opt],
                    2.0,
                    False,
                    note=f"at the floor: {reachable:.2f}x",
                )
            )
    return rows


def goals_table(threads: int, rows: Sequence[GoalRow]) -> Table:
    table = Table(title=f"Goals, {threads} BLAS thread{'s' if threads > 1 else ''}")
    for col in ("goal", "case", "measured", "target", "met?", "by how much"):
        table.add_column(col, justify="right" if col in ("measured", "target") else "left")
    previous = None
    for row in rows:
        met = row.met
        if met is None:
            verdict, margin = "n/a", "PyTorch not installed"
        elif row.at_most:
            verdict = "[green]met[/]" if met else "[red]not met[/]"
            if met:
                margin = f"{(1 - row.measured / row.target) * 100:.0f}% under the target"
            else:
                margin = f"ours must get {row.measured / row.target:.2f}x faster"
        else:
            verdict = "[green]met[/]" if met else "[red]not met[/]"
            if met:
                margin = f"{(row.measured / row.target - 1) * 100:.0f}% over the target"
            else:
                margin = f"ours must get {row.target / row.measured:.2f}x faster"
        if row.note:
            margin += f" ({row.note})"
        table.add_row(
            row.goal if row.goal != previous else "",
            row.case,
            _x(row.measured),
            f"{'<=' if row.at_most else '>='} {row.target:g}x",
            verdict,
            margin,
        )
        previous = row.goal
    return table


def stages_table(
    threads: int, contenders: Sequence[Contender], floors: dict[np.dtype, Floor]
) -> Table:
    table = Table(
        title=f"Where the best epoch of ours went, {threads} BLAS thread"
        f"{'s' if threads > 1 else ''} (seconds; in brackets the GEMM floor of the stage)"
    )
    for col in ("dtype", "optimizer", *STAGES, "rest of train()", "epoch", "epoch - floor"):
        table.add_column(col, justify="left" if col in ("dtype", "optimizer") else "right")
    for c in contenders:
        if c.impl != OURS or c.best is None or c.best.stages is None:
            continue
        s, floor = c.best.stages, floors[c.dtype]
        table.add_row(
            c.dtype.name,
            OPTIMIZER_NAMES[c.optimizer],
            f"{s['forward']:.3f} ({floor.stage_seconds('forward'):.3f})",
            f"{s['loss gradient']:.3f}",
            f"{s['backward']:.3f} ({floor.stage_seconds('backward'):.3f})",
            f"{s['optimizer step']:.3f}",
            f"{s['rest']:.3f}",
            f"{c.seconds:.3f}",
            f"{c.seconds - floor.seconds:.3f}",
        )
    return table


def gemm_table(floors: dict[np.dtype, Floor]) -> Table:
    table = Table(title="The GEMMs of one epoch, each timed alone (best of the rounds)")
    for col in ("GEMM", "count", "dtype", "µs each", "GFLOP/s", "s per epoch"):
        table.add_column(col, justify="left" if col in ("GEMM", "dtype") else "right")
    for dtype, floor in floors.items():
        for g, t in zip(floor.gemms, floor.seconds_each, strict=True):
            table.add_row(
                g.label,
                str(g.count),
                dtype.name,
                f"{t * 1e6:.1f}",
                f"{g.flops / t / 1e9:.1f}",
                f"{g.count * t:.3f}",
            )
    return table


def load_average() -> str:
    try:
        return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average unknown"


def others_load(threads: int) -> float:
    """About how many CPUs other processes kept busy last minute: the 1-minute load average
    less our own ``threads`` (0 where unknown)."""
    try:
        return max(0.0, os.getloadavg()[0] - threads)
    except OSError:
        return 0.0


def numpy_blas() -> str:
    """NumPy's BLAS library, version and kernels, as threadpoolctl sees them."""
    for info in threadpool_info():
        if info.get("user_api") == "blas" and "numpy" in info.get("filepath", ""):
            arch = f", {info['architecture']} kernels" if info.get("architecture") else ""
            return f"{info.get('internal_api')} {info.get('version')}{arch}"
    return "unknown"


def trap_table(runs: Sequence[TrapRun], n: int, repeats: int) -> Table:
    table = Table(
        title=f"float32 Adam on the real images, {TRAP_EPOCHS} epochs of {n:,} samples, "
        f"1 thread: the subnormal trap (each epoch the best of {repeats} run"
        f"{'s' if repeats > 1 else ''})"
    )
    cols = ("flushing", *(f"epoch {i + 1} s" for i in range(TRAP_EPOCHS)))
    for col in (*cols, f"{TRAP_EPOCHS} / 1", "Adam steps 1 -> 5, s", "subnormal in m, v"):
        table.add_column(col, justify="left" if col == cols[0] else "right")
    for run in runs:
        e, st = run.epoch_seconds, run.step_seconds
        table.add_row(
            "on (as run)" if run.flush else "off (control)",
            *(f"{x:.3f}" for x in e),
            _x(e[-1] / e[0]),
            f"{st[0]:.3f} -> {st[-1]:.3f}",
            f"{run.subnormals:,} / {run.moments:,}",
        )
    return table


def mlp(opts: argparse.Namespace, console: Console) -> None:
    """One epoch of a 784-256-128-10 MLP: ours against MLPClassifier, PyTorch and the GEMM floor."""
    plan = QUICK_PLAN if opts.quick else FULL_PLAN
    repeats = opts.repeats or plan.repeats
    start = time.perf_counter()
    data = load_data(plan.n_samples)
    torch = import_torch()
    contenders = make_contenders(data, torch)
    n, n_batches = plan.n_samples, math.ceil(plan.n_samples / BATCH)
    console.print(
        f"\n[bold]mlp[/]: one training epoch of a {'-'.join(map(str, SIZES))} ReLU/softmax MLP, "
        f"batch {BATCH} ({n_batches} updates, the last of {n % BATCH or BATCH} samples), on "
        f"{n:,} x {SIZES[0]} samples: {data.source}. SGD lr {LR['sgd']}, Adam lr {LR['adam']}. "
        f"Each implementation trains a warm-up epoch of {plan.warmup_samples:,} samples, then "
        f"one epoch per round, round-robin; best of up to {repeats} rounds (fewer when they "
        f"would take more than {plan.epochs_budget_s:g} s per thread count). "
        f"{os.cpu_count()} CPUs, {load_average()}."
    )
    blas = "MKL" if torch is not None and torch.backends.mkl.is_available() else "its own"
    console.print(f"  NumPy's BLAS (ours, MLPClassifier, the floor): {numpy_blas()}")
    if torch is not None:
        console.print(
            f"  PyTorch {torch.__version__} on the CPU ({blas} BLAS), torch.set_num_threads as in "
            "the title"
        )
    else:
        console.print("  PyTorch not installed: its rows say so, its goals are n/a")
    if opts.quick:
        console.print(
            f"  [yellow]--quick: {n:,} samples, not 60,000: the times are not those of a full "
            "epoch (the ratios are comparable)[/]"
        )

    for threads in THREADS:
        plural = "s" if threads > 1 else ""
        with n_threads(threads, torch):
            floors, gemm_rounds = measure_floors(plan, n)
            epoch_rounds = time_contenders(contenders, plan, repeats)
        busy = others_load(threads)
        console.print(results_table(threads, epoch_rounds, contenders, floors, torch is not None))
        console.print(
            f"  GEMM floor, {threads} thread{plural}: {floors[DTYPES[0]].flops / 1e9:.2f} GFLOP "
            f"per epoch (best of {gemm_rounds} rounds of each shape); "
            + "; ".join(
                f"{dt.name} {f.gflops:.1f} GFLOP/s -> floor {f.seconds:.3f} s"
                for dt, f in floors.items()
            )
            + f". {load_average()}"
        )
        kept = {c.dtype.name: c.best.weights_dtype.name for c in contenders if c.impl == SKLEARN}
        console.print(
            "  MLPClassifier's coefs_ dtype: "
            + ", ".join(f"{k} input -> {v}" for k, v in kept.items())
            + (" (it keeps float32)" if kept.get("float32") == "float32" else " (it upcasts!)")
        )
        for c in contenders:
            if c.best.weights_dtype != c.dtype:
                console.print(f"  [red]{c.impl} {c.dtype.name}: {c.best.weights_dtype} weights[/]")
        if busy > (os.cpu_count() or 1) - threads:  # they wanted more than we left them
            console.print(
                f"  [yellow]Other processes kept about {busy:.1f} of the {os.cpu_count()} CPUs "
                "busy meanwhile (1-minute load average less our threads): these times may be "
                "inflated, the 2-thread ones most (a BLAS call waits for its slower thread); "
                "rerun on a quiet machine to be sure.[/]"
            )
        console.print(goals_table(threads, goals(contenders, floors)))
        console.print(stages_table(threads, contenders, floors))
        if opts.verbose:
            console.print(gemm_table(floors))

    if data.real:
        runs = [TrapRun(True), TrapRun(False)]
        with n_threads(1, torch):
            for _ in range(plan.trap_repeats):  # interleaved: a busy spell hits both alike
                runs = [run.merge(subnormal_run(data, n, run.flush)) for run in runs]
        console.print(trap_table(runs, n, plan.trap_repeats))
        on, off = runs
        grew = on.epoch_seconds[-1] / on.epoch_seconds[0]
        console.print(
            f"  With flushing (as users run it), epoch {TRAP_EPOCHS} took "
            f"{on.epoch_seconds[-1]:.3f} s and epoch 1 {on.epoch_seconds[0]:.3f} s: the epoch time "
            f"{'grew' if grew > 1.1 else 'did not grow'} ({grew:.2f}x; under ~10% is noise on a "
            f"shared machine; the GEMM-bound stages, which subnormals do not touch, move as much), "
            f"and its Adam steps took {_x(on.step_seconds[-1] / on.step_seconds[0])} as long in "
            f"epoch {TRAP_EPOCHS} as in epoch 1. Without flushing, {off.subnormals:,} moment "
            f"entries were subnormal after epoch {TRAP_EPOCHS}, and the Adam steps of epoch "
            f"{TRAP_EPOCHS} took {_x(off.step_seconds[-1] / off.step_seconds[0])} those of epoch 1."
        )
    else:
        console.print("  Subnormal trap: skipped, the real Fashion-MNIST images were not found")
    console.print(f"  [dim]section mlp took {time.perf_counter() - start:.0f} s[/]")
