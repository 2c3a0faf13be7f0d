"""Section ``lockstep`` of ``make bench``: many small runs trained as one NumPy computation.

1. The circles-size sweep of the lockstep issue: a 2-5-1 sigmoid net, single-sample SGD, 5
   learning rates x 5 seeds x 5 CV folds = 125 sub-runs of a fixed number of steps each, one
   ``scratchnn sweep --seeds 0,1,2,3,4`` (``run_sweep``, no refit) with the processes engine at
   ``--jobs 2`` (sub-runs on the NumPy engine, then on the compiled one) and with the lockstep
   engine at ``--jobs 1`` and ``--jobs 2`` (NumPy sub-runs: the stack steps with the NumPy
   layers): the whole sweep's wall time, run folders written included, and net-steps per
   second. The three NumPy sweeps' results must be equal.
2. A mini-batch MLP sweep on Fashion-MNIST (when the files are there): 784-64-10 ReLU, batch
   64, one epoch on 54,000 images, 8 learning rates, the processes engine at ``--jobs 2``
   against the lockstep engine at ``--jobs 2``.
3. Where lockstep stops paying: K runs of one network shape trained one after the other with
   ``train()`` against the same K runs in one stack (``train_lockstep``), one BLAS thread, for
   widths and batch sizes from the assignment's nets to a Fashion-MNIST-size MLP (784-64-10,
   batch 64, on random pixels of Fashion's shape): the ratio of the two times. ``sweep --engine
   auto`` stacks a group when parameters x batch is at most ``sweep.AUTO_LOCKSTEP_LIMIT``.
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from threadpoolctl import threadpool_limits

from scratchnn_cli.config import TrainConfig
from scratchnn_cli.data.fashion_mnist import fashion_mnist_dir
from scratchnn_cli.errors import DataError
from scratchnn_cli.nn.network import Network
from scratchnn_cli.sweep import AUTO_LOCKSTEP_LIMIT, plan_sweep, run_sweep
from scratchnn_cli.training.lockstep import train_lockstep
from scratchnn_cli.training.loop import train, trainer_for

CIRCLES_SPEC = """\
name: bench_lockstep
seed: 0
data:
  dataset: circles500
model:
  struct: [5]
  activation: sigmoid
  sigma: 0.5
train:
  lr: 0.1
  eps: 0
  max_iterations: {steps}
  engine: {engine}
"""
LRS = "0.03,0.1,0.3,1,3"
SEEDS = "0,1,2,3,4"


def fresh_workers() -> None:
    """Stop joblib's worker processes, so that the next sweep starts its own as a user's would
    (kept warm, a sweep timed after another skipped ~1.5 s of start-up and imports)."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


def _sweep(spec: Path, runs: Path, engine: str, jobs: int) -> tuple[float, pd.DataFrame]:
    """One sweep of 5 learning rates x 5 seeds (``--seeds``: the same folds) x 5 folds = 125
    sub-runs, no refit: its wall time and its results.csv."""
    quiet = Console(file=io.StringIO())
    fresh_workers()
    start = time.perf_counter()
    plan = plan_sweep(spec, [], [f"train.lr={LRS}"], None, 5, [int(s) for s in SEEDS.split(",")])
    outcome = run_sweep(plan, runs, jobs=jobs, refit=False, engine=engine, console=quiet)
    seconds = time.perf_counter() - start
    return seconds, pd.read_csv(outcome.sweep_dir / "results.csv").drop(columns=["seconds"])


def circles_sweep(opts: argparse.Namespace, console: Console) -> None:
    steps = 600 if opts.quick else 30_000
    n_runs = 125
    table = Table(title=f"125-run circles sweep (2-5-1, single-sample SGD, {steps:,} steps each)")
    for col in ("engine", "jobs", "wall s", "net-steps/s", "vs processes --jobs 2"):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        rows, frames = [], []
        cases = (  # (sweep engine, jobs, the sub-runs' train.engine)
            ("processes", 2, "numpy"),
            ("processes", 2, "compiled"),
            ("lockstep", 1, "numpy"),
            ("lockstep", 2, "numpy"),
        )
        for engine, jobs, train_engine in cases:
            spec = Path(tmp) / "bench_lockstep.yaml"
            spec.write_text(CIRCLES_SPEC.format(steps=steps, engine=train_engine), "utf-8")
            runs = Path(tmp) / f"{engine}{jobs}{train_engine}"
            seconds, frame = _sweep(spec, runs, engine, jobs)
            rows.append((f"{engine} ({train_engine} sub-runs)", jobs, seconds))
            frames.append(frame)
            shutil.rmtree(runs)
    base = rows[0][2]
    for engine, jobs, seconds in rows:
        rate = n_runs * steps / seconds
        table.add_row(engine, str(jobs), f"{seconds:.1f}", f"{rate:,.0f}", f"{base / seconds:.1f}x")
    console.print(table)
    same = all(frames[0].equals(f) for f in frames[2:])
    console.print(
        f"  results.csv of the three NumPy sweeps equal (seconds column aside): {same}. Goal: "
        "at least 30x faster than processes with NumPy sub-runs at --jobs 2: compiled sub-runs "
        f"{base / rows[1][2]:.1f}x, lockstep {base / min(r[2] for r in rows[2:]):.1f}x."
    )


FASHION_SPEC = """\
name: bench_lockstep_fashion
seed: 0
data:
  dataset: fashion-mnist
  split: [0.9, 0.1, 0.0]
model:
  struct: [64]
  activation: relu
  init: he
train:
  engine: numpy
  optimizer: adam
  batch_size: 64
  sampling: shuffle
  eps: 0
  max_iterations: 100000000
  max_epochs: {epochs}
"""


def fashion_sweep(opts: argparse.Namespace, console: Console) -> None:
    try:
        fashion_mnist_dir(download=False)
    except DataError as exc:
        console.print(f"  Fashion-MNIST MLP sweep skipped: {exc}")
        return
    quiet = Console(file=io.StringIO())
    lrs = "0.0003,0.0005,0.001,0.002,0.003,0.005,0.01,0.02"
    table = Table(title="Fashion-MNIST MLP sweep (784-64-10, Adam, batch 64, 1 epoch, 8 points)")
    for col in ("engine", "jobs", "wall s", "vs processes --jobs 2"):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "bench_lockstep_fashion.yaml"
        spec.write_text(FASHION_SPEC.format(epochs=1), encoding="utf-8")
        rows, frames = [], []
        for engine in ("processes", "lockstep"):
            fresh_workers()
            plan = plan_sweep(spec, [], [f"train.lr={lrs}"], None, None)
            start = time.perf_counter()
            outcome = run_sweep(
                plan, Path(tmp) / engine, jobs=2, refit=False, engine=engine, console=quiet
            )
            rows.append((engine, time.perf_counter() - start))
            frames.append(pd.read_csv(outcome.sweep_dir / "results.csv").drop(columns=["seconds"]))
    for engine, seconds in rows:
        table.add_row(engine, "2", f"{seconds:.1f}", f"{rows[0][1] / seconds:.2f}x")
    console.print(table)
    console.print(f"  results.csv equal (seconds column aside): {frames[0].equals(frames[1])}")


def _runs(sizes: list[int], batch: int, K: int, n: int, steps: int) -> list[tuple]:
    """K runs' (net, X, y, cfg, rng) of one shape, each its own seed and lr."""
    cases = []
    for k in range(K):
        rng = np.random.default_rng(k)
        X = rng.standard_normal((n, sizes[0]))
        y = rng.integers(0, sizes[-1] if sizes[-1] > 1 else 2, n)
        out = "softmax" if sizes[-1] > 1 else "sigmoid"
        net = Network.build(
            sizes[0], sizes[1:-1], sizes[-1], "relu", out, rng=np.random.default_rng(100 + k)
        )
        cfg = TrainConfig(
            lr=0.01 * (k + 1),
            eps=0,
            max_iterations=steps,
            batch_size=batch,
            sampling="shuffle" if batch > 1 else "random",
        )
        cases.append((net, X, y, cfg, np.random.default_rng(k)))
    return cases


def crossover(opts: argparse.Namespace, console: Console) -> None:
    shapes = [
        ([2, 5, 1], 1),
        ([784, 10, 5, 1], 1),
        ([2, 5, 1], 64),
        ([64, 32, 10], 16),
        ([784, 64, 10], 16),
        ([784, 64, 10], 64),
    ]
    Ks = (4, 16) if opts.quick else (4, 16, 64)
    table = Table(
        title="K runs one after another (train) vs in one stack (train_lockstep), 1 thread"
    )
    for col in ("net", "batch", "params x batch", "K", "solo s", "lockstep s", "speed-up"):
        table.add_column(col, justify="right")
    with threadpool_limits(1):
        for sizes, batch in shapes:
            n_params = sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))
            steps = max(20, min(3000, 3_000_000 // (n_params * batch)))
            if opts.quick:
                steps = max(10, steps // 10)
            for K in Ks:
                if n_params * batch * K > 4e8 and not opts.quick:
                    continue
                n = max(batch * 4, 256)
                runs = _runs(sizes, batch, K, n, steps)
                start = time.perf_counter()
                for net, X, y, cfg, rng in runs:
                    train(net, X, y, max(2, sizes[-1]), cfg, rng)
                solo = time.perf_counter() - start
                runs = _runs(sizes, batch, K, n, steps)
                trainers = [
                    trainer_for(net, X, y, max(2, sizes[-1]), cfg, rng)
                    for net, X, y, cfg, rng in runs
                ]
                start = time.perf_counter()
                train_lockstep(trainers)
                stacked = time.perf_counter() - start
                table.add_row(
                    "-".join(map(str, sizes)),
                    str(batch),
                    f"{n_params * batch:,}",
                    str(K),
                    f"{solo:.2f}",
                    f"{stacked:.2f}",
                    f"{solo / stacked:.1f}x",
                )
    console.print(table)
    console.print(
        f"  sweep --engine auto stacks a group when parameters x batch <= {AUTO_LOCKSTEP_LIMIT:,}."
    )


def lockstep(opts: argparse.Namespace, console: Console) -> None:
    """The lockstep engine against solo runs: a 125-run sweep, and where stacking pays."""
    console.rule("[bold]lockstep[/]: many small runs as one NumPy computation")
    circles_sweep(opts, console)
    fashion_sweep(opts, console)
    crossover(opts, console)
