"""Section ``engines`` of ``make bench``: where the compiled engine stops paying.

One epoch of 2,048 random samples, the same network, optimizer and sample order, trained by the
compiled engine and by the NumPy engine (``train.engine``), one BLAS thread, best of
``--repeats`` (default 5, interleaved). Networks from the assignment's (2-5-1, 784-10-5-1) to a
Fashion-MNIST MLP (784-256-128-10), batches of 1 to 256, plain SGD and Adam. The ratio numpy /
compiled against parameters x rows per update is what ``nn/engines.COMPILED_PAYS_BELOW`` is
read from: ``auto`` takes the compiled engine below it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from rich.console import Console
from rich.table import Table
from threadpoolctl import threadpool_limits

from scratchnn_cli.config import TrainConfig
from scratchnn_cli.nn.engines import COMPILED_PAYS_BELOW
from scratchnn_cli.nn.network import Network
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
    net = Network.build(
        sizes[0],
        list(sizes[1:-1]),
        sizes[-1],
        activation="relu",
        output="softmax" if K > 2 else "sigmoid",
        rng=np.random.default_rng(1),
        init="he",
    )
    cfg = TrainConfig(
        lr=1e-3,
        eps=0,
        max_epochs=1,
        batch_size=batch,
        sampling="shuffle",
        optimizer={"name": rule},
        engine=engine,
    )
    start = time.perf_counter()
    train(net, X, y, K, cfg, np.random.default_rng(2))
    return time.perf_counter() - start


def engines(opts: argparse.Namespace, console: Console) -> None:
    """The compiled engine's epoch against the NumPy engine's, by network and batch size."""
    console.rule("[bold]engines[/]: compiled loops against NumPy layers, one epoch")
    repeats = opts.repeats or (2 if opts.quick else 5)
    epoch_seconds((2, 5, 1), 1, "sgd", "compiled")  # compile (or load the cache) first
    table = Table(title=f"One epoch of {N:,} samples, 1 BLAS thread, best of {repeats}")
    columns = ("net", "rule", "batch", "params x batch", "compiled s", "numpy s", "numpy/comp")
    for col in columns:
        table.add_column(col, justify="left" if col in ("net", "rule") else "right")
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
                    colour = "green" if ratio > 1 else "red"
                    table.add_row(
                        "-".join(map(str, sizes)),
                        rule,
                        str(batch),
                        f"{n_params * batch:,}",
                        f"{best['compiled']:.4f}",
                        f"{best['numpy']:.4f}",
                        f"[{colour}]{ratio:.2f}x[/]",
                    )
    console.print(table)
    console.print(
        f"  auto takes the compiled engine while parameters x batch < {COMPILED_PAYS_BELOW:,} "
        "(nn/engines.py): the compiled column should win above that line and lose below it."
    )
