"""Section ``engines`` of ``bench.py``: the compiled engine against the NumPy one (train.engine).

1. One epoch of the same network, optimizer and sample order by each engine, from the assignment's
nets to a Fashion-MNIST MLP, batches of 1 to 256: where ``nn/engines.COMPILED_PAYS_BELOW`` is read.
2. The assignment's 125-run circles sweep (``--jobs 2``, fresh joblib workers each) by each engine:
the whole wall time, and equal results.
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
from common import new_table
from rich.console import Console
from threadpoolctl import threadpool_limits

from scratchnn_cli.config import TrainConfig
from scratchnn_cli.nn.engines import COMPILED_PAYS_BELOW
from scratchnn_cli.nn.network import Network
from scratchnn_cli.sweep import plan_sweep, run_sweep
from scratchnn_cli.training.loop import train

N = 2048
CASES = (  # (layer sizes, batch sizes)
    ((2, 5, 1), (1, 16, 256)),
    ((784, 10, 5, 1), (1, 16, 128)),
    ((64, 32, 10), (1, 16, 128)),
    ((784, 64, 10), (1, 8, 32, 128)),
    ((784, 256, 128, 10), (1, 4, 16, 64)),
)


def epoch_seconds(sizes: tuple[int, ...], batch: int, rule: str, engine: str) -> float:
    """One epoch of N samples (N // batch updates): its seconds as ``train`` timed it."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, sizes[0]))
    K = sizes[-1] if sizes[-1] > 1 else 2
    y = rng.integers(0, K, N)
    layers = sizes[0], list(sizes[1:-1]), sizes[-1]
    output = "softmax" if K > 2 else "sigmoid"
    net = Network.from_struct(*layers, "relu", output, rng=np.random.default_rng(1), init="he")
    options = {"optimizer": {"name": rule}, "engine": engine}
    cfg = TrainConfig(lr=1e-3, eps=0, max_epochs=1, batch_size=batch, sampling="shuffle", **options)
    start = time.perf_counter()
    train(net, X, y, K, cfg, np.random.default_rng(2))
    return time.perf_counter() - start


CIRCLES_SPEC = """\
name: bench_sweep
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


def fresh_workers() -> None:
    """Stop joblib's worker processes, so that the next sweep starts its own as a user's would
    (kept warm, a sweep timed after another skipped ~1.5 s of start-up and imports)."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


def circles_sweep(opts: argparse.Namespace, console: Console) -> None:
    steps = 600 if opts.quick else 30_000
    n_runs = 125
    table = new_table(
        f"125-run circles sweep (2-5-1, single-sample SGD, {steps:,} steps each)",
        ("sub-runs", "jobs", "wall s", "net-steps/s", "vs numpy"),
    )
    rows, frames = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for engine in ("numpy", "compiled"):
            spec = Path(tmp) / "bench_sweep.yaml"
            spec.write_text(CIRCLES_SPEC.format(steps=steps, engine=engine), "utf-8")
            fresh_workers()
            start = time.perf_counter()
            plan = plan_sweep(spec, [], ["train.lr=0.03,0.1,0.3,1,3"], None, 5, [0, 1, 2, 3, 4])
            runs = Path(tmp) / engine
            outcome = run_sweep(
                plan, runs, jobs=2, refit=False, console=Console(file=io.StringIO())
            )
            rows.append((engine, time.perf_counter() - start))
            frames.append(pd.read_csv(outcome.sweep_dir / "results.csv"))
            shutil.rmtree(runs)
    for engine, seconds in rows:
        rate = n_runs * steps / seconds
        speedup = f"{rows[0][1] / seconds:.1f}x"
        table.add_row(engine, "2", f"{seconds:.1f}", f"{rate:,.0f}", speedup)
    console.print(table)
    accuracy = [frame["mean_val_accuracy"].round(6).tolist() for frame in frames]
    same = accuracy[0] == accuracy[1]
    console.print(
        f"  mean validation accuracy of the 5 points equal to 6 digits: {same}."
        f" Goal: compiled sub-runs at least 30x the NumPy ones: {rows[0][1] / rows[1][1]:.1f}x."
    )


def engines(opts: argparse.Namespace, console: Console) -> None:
    """The compiled engine's epoch against the NumPy engine's, by network and batch size."""
    console.rule("[bold]engines[/]: compiled loops against NumPy layers")
    crossover(opts, console)
    circles_sweep(opts, console)


def crossover(opts: argparse.Namespace, console: Console) -> None:
    repeats = opts.repeats or (2 if opts.quick else 5)
    epoch_seconds((2, 5, 1), 1, "sgd", "compiled")  # compile (or load the cache) first
    table = new_table(
        f"One epoch of {N:,} samples, 1 BLAS thread, best of {repeats}",
        ("net", "rule", "batch", "params x batch", "compiled s", "numpy s", "numpy/comp"),
        left=("net", "rule"),
    )
    with threadpool_limits(1):
        for sizes, batches in CASES:
            n_params = sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))
            for batch in batches:
                for rule in ("sgd", "adam"):
                    best = {"compiled": np.inf, "numpy": np.inf}
                    for _ in range(repeats):
                        for engine in best:
                            seconds = epoch_seconds(sizes, batch, rule, engine)
                            best[engine] = min(best[engine], seconds)
                    ratio = best["numpy"] / best["compiled"]
                    cells = f"{best['compiled']:.4f}", f"{best['numpy']:.4f}"
                    cells += (f"[{'green' if ratio > 1 else 'red'}]{ratio:.2f}x[/]",)
                    net = "-".join(map(str, sizes))
                    table.add_row(net, rule, str(batch), f"{n_params * batch:,}", *cells)
    console.print(table)
    console.print(
        f"  auto takes the compiled engine while parameters x batch < {COMPILED_PAYS_BELOW:,} "
        "(nn/engines.py): the compiled column should win above that line and lose below it."
    )
