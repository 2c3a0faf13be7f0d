"""Section ``diagnostics`` of ``bench.py``: what ``train.diagnostics: true`` costs. Four specs
(``configs/``), each trained by ``run_experiment`` with diagnostics off and on, back to back in
each round (which goes first alternates), on one BLAS thread; the goals are on the median round."""

from __future__ import annotations

import argparse
import gc
import io
import json
import math
import os
import statistics
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import numpy as np
from common import SEED, busy_warning, course_data, load_average, new_table, rounds
from rich.console import Console
from threadpoolctl import threadpool_limits

from scratchnn_cli.config import load_config
from scratchnn_cli.data.fashion_mnist import FASHION_MNIST_FILES, fashion_mnist_dir
from scratchnn_cli.errors import DataError
from scratchnn_cli.experiment import run_experiment
from scratchnn_cli.training.diagnostics import TIME_SHARE, Diagnostics

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@dataclass
class Case:
    """A spec trained with diagnostics off and on, and what its rounds measured."""

    label: str
    config: str  # in configs/
    sets: list[str]  # --set options
    goal: float  # the largest ratio allowed
    max_rounds: tuple[int, int]  # full run, --quick
    budget_s: tuple[float, float]  # the seconds the rounds may take: full run, --quick
    quick_sets: list[str] = field(default_factory=list)
    warm_up: bool = True  # a first run, untimed (data cached, code compiled)
    train_off: list[float] = field(default_factory=list)  # per round: the off run's epochs
    overheads: list[float] = field(default_factory=list)  # per round: extra / train_off
    in_epochs: list[float] = field(default_factory=list)  # per round: epochs' seconds on / off
    inside: list[float] = field(default_factory=list)  # per round: seconds inside Diagnostics
    probes: int = 0
    epochs: int = 0
    engine: str = ""


def cases() -> list[Case]:
    return [
        Case(
            "fashion_mlp (MLP), 1 epoch",
            "fashion_mlp.yaml",
            ["train.max_epochs=1"],
            1.05,
            (3, 1),
            (80.0, 20.0),
            quick_sets=["data.train_size=6000"],
        ),
        Case(
            "fashion_cnn (CNN), 1 epoch",
            "fashion_cnn.yaml",
            ["train.max_epochs=1"],  # ~75 s here: one round, no warm-up (the data is cached)
            1.05,
            (1, 1),
            (math.inf, math.inf),  # its one round (or --repeats N rounds) whatever they take
            quick_sets=["data.train_size=2000"],
            warm_up=False,
        ),
        Case(
            "digits_cnn (CNN), 2 epochs",
            "digits_cnn.yaml",
            ["train.max_epochs=2"],
            1.05,
            (7, 2),
            (20.0, 5.0),
        ),
        Case(
            "circles_shallow (tiny), 300k updates",
            "circles_shallow.yaml",
            ["train.max_iterations=300000"],
            1.10,
            (15, 3),
            (15.0, 3.0),
        ),
    ]


QUIET = Console(file=io.StringIO(), quiet=True)


def train_once(
    case: Case, diagnostics: bool, runs_dir: Path, quick: bool
) -> tuple[float, float, float]:
    """Seconds of the whole run_experiment, of its epochs, and inside ``Diagnostics`` (its
    probe's set-up and its probes, timed around each call), diagnostics on or off."""
    extra = case.quick_sets if quick else []
    overrides = [*case.sets, *extra, f"train.diagnostics={str(diagnostics).lower()}"]
    config = load_config(CONFIGS / case.config, overrides)
    inside = [0.0]

    def timed(method: Callable[..., None]) -> Callable[..., None]:
        def call(*args: object, **kwargs: object) -> None:
            begin = time.perf_counter()
            method(*args, **kwargs)
            inside[0] += time.perf_counter() - begin

        return call

    gc.collect()
    start = time.perf_counter()
    with (
        mock.patch.object(Diagnostics, "__init__", timed(Diagnostics.__init__)),
        mock.patch.object(Diagnostics, "take", timed(Diagnostics.take)),
    ):
        outcome = run_experiment(config, runs_dir, console=QUIET, plots=False)
    wall = time.perf_counter() - start
    record = json.loads((outcome.run_dir / "run.json").read_text(encoding="utf-8"))
    case.engine, case.epochs = str(record.get("engine", "?")), outcome.result.epochs
    if diagnostics:
        with open(outcome.run_dir / "diagnostics.csv", encoding="utf-8") as f:
            case.probes = len({line.split(",", 1)[0] for line in f} - {"epoch"})
    return wall, outcome.result.seconds, inside[0]


def time_case(case: Case, runs_dir: Path, quick: bool) -> None:
    """A warm-up run with diagnostics (data cached, code compiled), then interleaved rounds."""
    if case.warm_up:
        train_once(case, True, runs_dir, quick)
    pick = 1 if quick else 0
    for i in rounds(case.max_rounds[pick], case.budget_s[pick]):
        timed = {}
        for diagnostics in (i % 2 == 1, i % 2 == 0):  # off first, then on first, ...
            timed[diagnostics] = train_once(case, diagnostics, runs_dir, quick)
        extra = timed[True][0] - timed[False][0]
        case.train_off.append(timed[False][1])
        case.overheads.append(extra / timed[False][1])
        case.in_epochs.append(timed[True][1] / timed[False][1])
        case.inside.append(timed[True][2])


@contextmanager
def fashion_mnist_or_random(console: Console) -> Iterator[None]:
    """Fashion-MNIST where it is found (``common.course_data``, else the cache); else a temporary
    folder of IDX files of random pixels and labels, as many as Fashion-MNIST's."""
    with course_data():
        try:
            folder = fashion_mnist_dir(download=False)
        except DataError as exc:
            with tempfile.TemporaryDirectory() as tmp:
                write_random_fashion_mnist(Path(tmp) / "fashion-mnist")
                console.print(
                    f"  [yellow]Fashion-MNIST not found ({exc}): the MLP trains on random "
                    "pixels and labels of the same size[/]"
                )
                with mock.patch.dict(os.environ, {"SCRATCHNN_DATA": tmp}):
                    yield
            return
        console.print(f"  Fashion-MNIST from {folder}")
        yield


def write_random_fashion_mnist(folder: Path) -> None:
    """Fashion-MNIST's four IDX files (plain, under their .gz names: the reader takes both) of
    uniform random pixels and labels: 60,000 training and 10,000 test images."""
    folder.mkdir(parents=True)
    gen = np.random.default_rng(SEED)
    names = iter(FASHION_MNIST_FILES)
    for n in (60_000, 10_000):
        images = gen.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = gen.integers(0, 10, size=n, dtype=np.uint8)
        (folder / next(names)).write_bytes(
            struct.pack(">4B3I", 0, 0, 8, 3, n, 28, 28) + images.tobytes()
        )
        (folder / next(names)).write_bytes(struct.pack(">4BI", 0, 0, 8, 1, n) + labels.tobytes())


def diagnostics(opts: argparse.Namespace, console: Console) -> None:
    """Training with train.diagnostics on against off: the ratio of their times, and the goals."""
    console.rule("[bold]diagnostics[/]: what train.diagnostics costs")
    chosen = cases()
    if opts.repeats:
        for case in chosen:
            case.max_rounds = (opts.repeats, opts.repeats)
    with (
        fashion_mnist_or_random(console),
        tempfile.TemporaryDirectory() as tmp,
        threadpool_limits(limits=1),
    ):
        console.print("  1 BLAS thread (a busy machine stretches a 2-thread GEMM unevenly)")
        if opts.quick:
            console.print(
                "  [yellow]--quick: 1 to 3 rounds, the MLP on 12,000 samples (the two fixed "
                "probes weigh 5x more in its shorter epoch): the goals are the full run's[/]"
            )
        for case in chosen:
            time_case(case, Path(tmp), opts.quick)
    table = new_table(
        "Diagnostics on / off: the seconds spent inside the diagnostics code against the "
        "epochs' (the goal), and the whole runs' ratio; medians of interleaved rounds",
        ("case", "engine", "epochs", "probes", "epochs s off", "inside s", "cost", "met")
        + ("whole runs", "in epochs"),
        left=("case", "engine", "met"),
    )
    for case in chosen:
        off = statistics.median(case.train_off)
        inside = statistics.median(case.inside)
        cost = 1 + inside / off
        met = f"{'[green]yes' if cost <= case.goal else '[red]no'}[/] (<= {case.goal:.2f}x)"
        counts = f"{case.epochs:,}", str(case.probes)
        judged = f"{off:.3f}", f"{inside:.3f}", f"{cost:.3f}x", met
        whole, in_epochs = 1 + statistics.median(case.overheads), statistics.median(case.in_epochs)
        table.add_row(
            case.label, case.engine, *counts, *judged, f"{whole:.3f}x", f"{in_epochs:.3f}x"
        )
    console.print(table)
    warning = busy_warning(1)
    if warning:
        console.print(warning)
    console.print(
        "  inside s: the seconds inside Diagnostics (its probe's set-up and every probe, timed "
        "around each call); cost: 1 + inside s / epochs s off, what the goal is checked on. "
        "whole runs: 1 + (run with diagnostics - run without, whole run_experiment) / epochs s "
        "off, which a busy machine moves by more than the probes cost (see in epochs: the "
        "epochs' seconds on / off, where only the probes after epochs run, none in a 1-epoch "
        "run). probes: the probe epochs in diagnostics.csv (the initial and final "
        f"weights always, others while probing stays within {TIME_SHARE:.0%} of the time). "
        f"{load_average()}."
    )
