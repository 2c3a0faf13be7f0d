"""What the sections of ``bench.py`` share: the budget of a run, the data, timing rounds,
contenders, the PyTorch loop, the machine, and the helpers of their tables."""

from __future__ import annotations

import functools
import math
import os
import time
import timeit
from collections.abc import Callable, Hashable, Iterator, Sequence
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
from scratchnn_cli.nn.optim.optimizers import Optimizer
from scratchnn_cli.training import TrainResult

BATCH = 128
SEED = 0
THREADS = (1, 2)
N_CLASSES = 10
OURS = "ours (train())"
# The course data sits beside the project (as the Makefile assumes) unless $SCRATCHNN_DATA says.
BESIDE_PROJECT = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class Budget:
    """How much to run, and the time budgets that keep a busy machine from stretching the run."""

    n_samples: int  # samples of the timed epoch
    repeats: int  # round-robin rounds of epochs per thread count, at most
    epochs_budget_s: float  # no new round once the rounds of a thread count would pass this
    warmup_samples: int
    gemm_rounds: int  # rounds of GEMM timings, at most
    gemm_budget_s: float  # per thread count
    trap_repeats: int = 0  # mlp: runs of the subnormal trap, each with flushing on and off
    profile_batches: int = 0  # cnn: updates of the per-layer breakdown
    memory_batches: int = 0  # cnn: updates traced by tracemalloc


def rounds(max_rounds: int, budget_s: float) -> Iterator[int]:
    """0, 1, ... up to ``max_rounds``, ending early when one more round (as long as the average
    one so far) would end past ``budget_s``; the first round always runs."""
    start = time.perf_counter()
    for i in range(max_rounds):
        elapsed = time.perf_counter() - start
        if i > 0 and elapsed + elapsed / i > budget_s:
            return
        yield i


# --- The data and the runs of ours ----------------------------------------------------------------
@contextmanager
def course_data() -> Iterator[None]:
    """$SCRATCHNN_DATA as given, else ``../shared/data`` beside the project when it exists."""
    beside = not os.environ.get("SCRATCHNN_DATA") and BESIDE_PROJECT.is_dir()
    with mock.patch.dict(os.environ, {"SCRATCHNN_DATA": str(BESIDE_PROJECT)} if beside else {}):
        yield


@dataclass
class Data:
    """Training images as C-contiguous (n, 28, 28, 1) float32 in [0, 1], and their labels."""

    X: np.ndarray
    y: np.ndarray
    real: bool
    source: str


def load_data(n_samples: int) -> Data:
    """All 60,000 Fashion-MNIST training images / 255 when the files are found (see
    ``course_data``, else the cache); else ``n_samples`` images of random pixels and labels."""
    try:
        with course_data():
            images, labels, _, _ = load_fashion_mnist(download=False)
    except DataError as exc:
        gen = np.random.default_rng(SEED)
        X = gen.random((n_samples, 28, 28, 1), dtype=np.float32)
        y = gen.integers(0, N_CLASSES, size=n_samples)
        return Data(
            X, y, False, f"random uniform pixels and labels (Fashion-MNIST not found: {exc})"
        )
    X = np.ascontiguousarray(images.reshape(len(images), 28, 28, 1), dtype=np.float32)
    X /= np.float32(255)
    return Data(X, labels.astype(np.int64), True, "Fashion-MNIST training images / 255")


def train_config(optimizer: str, lr: float, epochs: int = 1, updates: int = 10**9) -> TrainConfig:
    """Shuffled batches of BATCH, ``epochs`` epochs or ``updates`` updates; eps 0: no early stop."""
    return TrainConfig(
        lr=lr,
        eps=0.0,
        max_iterations=updates,
        max_epochs=epochs,
        batch_size=BATCH,
        sampling="shuffle",
        optimizer={"name": optimizer},
    )


def sample_rng() -> np.random.Generator:
    """The sample order of every run of ours."""
    return np.random.default_rng(SEED + 1)


def expect_updates(result: TrainResult, updates: int) -> None:
    if result.iterations != updates:
        raise RuntimeError(f"train() did {result.iterations} updates: {result.stop_reason}")


def timed(fn: Callable[..., Any], totals: dict[str, float], key: str) -> Callable[..., Any]:
    """``fn``, adding the seconds of each call to ``totals[key]``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - start

    return wrapper


@contextmanager
def capture_optimizer(on_build: Callable[[Optimizer], None]) -> Iterator[list[Optimizer]]:
    """Patches train()'s make_optimizer: yields a list that receives the optimizer train() builds,
    after ``on_build`` has been called on it."""
    built: list[Optimizer] = []
    real = train_module.make_optimizer

    def make(*args: Any, **kwargs: Any) -> Optimizer:
        built.append(real(*args, **kwargs))
        on_build(built[-1])
        return built[-1]

    with mock.patch.object(train_module, "make_optimizer", make):
        yield built


# --- Contenders: the rows of the results tables, timed round-robin --------------------------------
@dataclass
class Epoch:
    """One timed epoch: its seconds, the dtype the weights were trained in, and (ours, in the mlp
    section) the seconds of each stage."""

    seconds: float
    weights_dtype: np.dtype | None = None
    stages: dict[str, float] | None = None


@dataclass
class Contender:
    """An implementation training one case (a network, a dtype and optimizer), epoch by epoch."""

    impl: str
    case: Hashable
    epoch: Callable[[int], Epoch]  # n samples -> one epoch on the first n
    runs: list[Epoch] = field(default_factory=list)  # each round's epoch, in order

    @property
    def best(self) -> Epoch:
        return min(self.runs, key=lambda run: run.seconds)

    @property
    def seconds(self) -> float:
        return self.best.seconds if self.runs else math.nan


def time_contenders(
    contenders: Sequence[Contender], budget: Budget, repeats: int, budget_s: float
) -> int:
    """A warm-up epoch each, then round-robin rounds of one epoch each (up to ``repeats``, within
    ``budget_s``), so that a burst of work from another process spoils a round, not one
    contender's every sample. Returns the number of rounds run."""
    for c in contenders:
        c.runs = []
        c.epoch(budget.warmup_samples)
    for _ in rounds(repeats, budget_s):
        for c in contenders:
            c.runs.append(c.epoch(budget.n_samples))
    return len(contenders[0].runs)


def rounds_note(budget: Budget, repeats: int, budget_s: float, noun: str, aside: str = "") -> str:
    """How the contenders of a section are timed, and the machine."""
    limit = ""
    if math.isfinite(budget_s):
        limit = f" (fewer when they would take more than {budget_s:g} s per thread count{aside})"
    return (
        f"Each contender trains a warm-up epoch of {budget.warmup_samples:,} {noun}, then one "
        f"epoch per round, round-robin; best of up to {repeats} rounds{limit}. "
        f"{os.cpu_count()} CPUs, {load_average()}."
    )


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


# --- PyTorch, threads and the machine -------------------------------------------------------------
def import_torch() -> Any | None:
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_epoch(torch: Any, model: Any, opt: Any, X: Any, y: Any, channels_last: bool) -> float:
    """Seconds of one epoch of a plain PyTorch loop over all of X: shuffled index batches,
    forward, loss, backward, step."""
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    order = torch.randperm(len(X))
    total = 0.0
    for s in range(0, len(X), BATCH):
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


def load_average() -> str:
    try:
        return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average unknown"


def busy_warning(threads: int) -> str:
    """A warning when other processes (the 1-minute load average less our ``threads``) wanted
    more CPUs than we left them; call it just after the timings. Empty otherwise."""
    try:
        busy = os.getloadavg()[0] - threads
    except OSError:
        return ""
    if busy <= (os.cpu_count() or 1) - threads:
        return ""
    return (
        f"  [yellow]Other processes kept about {busy:.1f} of the {os.cpu_count()} CPUs busy "
        f"meanwhile (1-minute load average less our threads): these {threads}-thread times may "
        "be inflated (a BLAS call waits for its slower thread); rerun on a quiet machine.[/]"
    )


def print_setup(console: Console, torch: Any | None, blas_users: str, quick: str | None) -> None:
    """The libraries a section's numbers come from, and the --quick warning (when given)."""
    blas = [i for i in threadpool_info() if i["user_api"] == "blas" and "numpy" in i["filepath"]]
    kernels = f", {blas[0]['architecture']} kernels" if blas and "architecture" in blas[0] else ""
    name = f"{blas[0]['internal_api']} {blas[0]['version']}{kernels}" if blas else "unknown"
    console.print(f"  NumPy's BLAS ({blas_users}): {name}")
    if torch is None:
        console.print("  PyTorch not installed: its rows say so, its goals are n/a")
    else:
        blas = "MKL" if torch.backends.mkl.is_available() else "its own"
        onednn = "on" if torch.backends.mkldnn.is_available() else "off"
        console.print(
            f"  PyTorch {torch.__version__} on the CPU ({blas} BLAS, oneDNN {onednn}), "
            "torch.set_num_threads as in the title"
        )
    if quick:
        console.print(f"  [yellow]--quick: {quick}[/]")


# --- Tables ---------------------------------------------------------------------------------------
def new_table(title: str, columns: Sequence[str], left: Sequence[str] = (), **kwargs: Any) -> Table:
    """A table of ``columns``: those named in ``left`` left-aligned, the others (numbers) right."""
    table = Table(title=title, **kwargs)
    for col in columns:
        table.add_column(col, justify="left" if col in left else "right")
    return table


def ratio(value: float) -> str:
    return f"{value:.2f}x" if math.isfinite(value) else "-"


def count(n: int, noun: str) -> str:
    """``1 thread``, ``2 threads``."""
    return f"{n} {noun}{'s' if n != 1 else ''}"
