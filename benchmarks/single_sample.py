"""Section ``single-sample`` of ``bench.py``: single-sample SGD steps per second of ``train()``
(compiled and NumPy engines) against ``notebook_port.LoopNet``, the course notebook's per-element
loops, after checking that all compute the same weights; then the NumPy calls of one step of the
NumPy engine, counted inside ``train()`` and each replayed alone (``-v``: every call site)."""

from __future__ import annotations

import argparse
import functools
import linecache
import math
import operator
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from common import best_call_seconds, new_table
from notebook_port import LoopNet
from rich.console import Console
from rich.markup import escape

import scratchnn_cli
import scratchnn_cli.training.loop as train_module
from scratchnn_cli.config import TrainConfig
from scratchnn_cli.nn.network import Network
from scratchnn_cli.training import train

N_SAMPLES = 1000  # training-set size: an epoch (one rng.integers draw, one cost) is this many steps
LR = 0.01  # learning rate of the timed runs (small enough never to saturate the sigmoids)
CHECK_LR = 0.1  # learning rate of the same-weights check (large, so the weights move a lot)
WEIGHT_SEED, SAMPLE_SEED, DATA_SEED = 1, 2, 3


@dataclass(frozen=True)
class NetCase:
    """One network of the comparison and how many steps each side is timed on."""

    sizes: tuple[int, ...]
    goal: float  # the compiled engine's speed-up over the loops we aim for
    ours_steps: int  # steps timed of the compiled engine (the NumPy one: a hundredth, >= 1,000)
    loop_steps: int
    check_steps: int

    @property
    def name(self) -> str:
        return "-".join(map(str, self.sizes))


CASES = (  # steps per timing; each side is timed --repeats times (default 20), the best one kept
    NetCase((2, 5, 1), goal=100.0, ours_steps=500_000, loop_steps=5_000, check_steps=300),
    NetCase((784, 10, 5, 1), goal=500.0, ours_steps=50_000, loop_steps=50, check_steps=300),
)
QUICK_CASES = (  # --quick: default 3 repeats
    NetCase((2, 5, 1), goal=100.0, ours_steps=50_000, loop_steps=1_000, check_steps=200),
    NetCase((784, 10, 5, 1), goal=500.0, ours_steps=5_000, loop_steps=10, check_steps=40),
)


def make_data(n_features: int, n_samples: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Random binary-labelled data: 2-D Gaussian points labelled by a circle of radius 1.18 (half
    of the points inside), or uniform [0, 1] "pixels" labelled by which half of them is brighter."""
    if n_features == 2:
        X = rng.normal(size=(n_samples, 2))
        y = (np.hypot(X[:, 0], X[:, 1]) > 1.18).astype(np.int64)
    else:
        X = rng.uniform(0.0, 1.0, size=(n_samples, n_features))
        half = n_features // 2
        y = (X[:, :half].mean(axis=1) > X[:, half:].mean(axis=1)).astype(np.int64)
    return X, y


def dense_network(sizes: Sequence[int]) -> Network:
    """Our sigmoid network with sigmoid output, weights ~ Normal(0, 0.1) from WEIGHT_SEED."""
    rng, hidden = np.random.default_rng(WEIGHT_SEED), list(sizes[1:-1])
    return Network.from_struct(
        sizes[0], hidden, sizes[-1], activation="sigmoid", output="sigmoid", rng=rng, sigma=0.1
    )


def run_ours(
    sizes: Sequence[int], X: np.ndarray, y: np.ndarray, steps: int, lr: float, engine: str
) -> tuple[Network, float]:
    """A fresh net trained by ``train()`` with ``engine``, and train()'s steps per second."""
    net = dense_network(sizes)
    cfg = TrainConfig(lr=lr, eps=0.0, max_iterations=steps, engine=engine)  # eps 0: no early stop
    result = train(net, X, y, 2, cfg, np.random.default_rng(SAMPLE_SEED))
    if result.iterations != steps:
        raise RuntimeError(f"train() stopped early: {result.stop_reason}")
    return net, result.iterations / result.seconds


def run_loops(
    sizes: Sequence[int], X: np.ndarray, y: np.ndarray, steps: int, lr: float
) -> tuple[LoopNet, float]:
    """Train the notebook port from the same start; returns (LoopNet, steps per second)."""
    loops = LoopNet(dense_network(sizes).params())
    _, seconds = loops.train(X, y, lr, steps, np.random.default_rng(SAMPLE_SEED))
    return loops, steps / seconds


def check_same_weights(
    case: NetCase, X: np.ndarray, y: np.ndarray, engine: str
) -> tuple[float, float]:
    """Both sides, same initial weights and sample order: the weights must agree after
    ``check_steps`` steps. Returns (largest difference, largest distance moved from the start)."""
    start = dense_network(case.sizes).params()
    ours, _ = run_ours(case.sizes, X, y, case.check_steps, CHECK_LR, engine)
    loops, _ = run_loops(case.sizes, X, y, case.check_steps, CHECK_LR)
    diff = moved = 0.0
    for k, (p0, a, b) in enumerate(zip(start, ours.params(), loops.params(), strict=True)):
        if not np.allclose(a, b, rtol=1e-9, atol=1e-12):
            raise AssertionError(
                f"{case.name}: {'Wb'[k % 2]}{k // 2} differs after {case.check_steps} steps: our "
                f"{engine} engine and the notebook port do not compute the same thing "
                f"(max |diff| {np.abs(a - b).max():.3g})"
            )
        diff = max(diff, float(np.abs(a - b).max()))
        moved = max(moved, float(np.abs(a - p0).max()))
    if moved < 1e-3:
        raise AssertionError(f"{case.name}: the weights barely moved; the check proves nothing")
    return diff, moved


# --- Counting the NumPy calls of one step ---------------------------------------------------------
PACKAGE_DIR = str(Path(scratchnn_cli.__file__).resolve().parent)


@dataclass
class LoggedCall:
    """One distinct NumPy call site: where it is, what it calls, how often, and how to replay it."""

    stage: str  # the trainer-level part it belongs to: Network.forward, Loss.dZ, SGD.step, ...
    where: str  # file:line, the path relative to the scratchnn_cli package
    op: str  # np.<ufunc>[.method], or an indexing operation
    kind: str  # "ufunc" or "index"
    replay: Callable[[], Any]
    count: int = 0


class _Recorder:
    """Collects LoggedCalls, keyed by call site, operation and argument shapes."""

    def __init__(self) -> None:
        self.calls: dict[tuple, LoggedCall] = {}

    def log(self, op: str, kind: str, func: Callable, args: tuple, kwargs: dict) -> None:
        stage, where = _call_site()
        key = (where, op, _describe(args), _describe(kwargs))
        call = self.calls.get(key)
        if call is None:
            memo: dict = {}
            args, kwargs = _snapshot(args, memo), _snapshot(kwargs, memo)
            replay = functools.partial(func, *args, **kwargs)
            call = self.calls[key] = LoggedCall(stage, where, op, kind, replay)
        call.count += 1


_RECORDER: _Recorder | None = None


def _call_site() -> tuple[str, str]:
    """(stage, file:line) of the innermost scratchnn_cli frame that made the call; the stage is
    the function train() called (Network.forward, SGD.step, ...), "train" for its own calls."""
    frame = sys._getframe(3)  # _call_site <- _Recorder.log <- CountedArray method <- the caller
    chain = []  # scratchnn_cli frames, innermost first, up to train()
    while frame is not None:
        code = frame.f_code
        if code.co_filename.startswith(PACKAGE_DIR):
            chain.append(frame)
            if code.co_qualname == "Trainer.run" and code.co_filename.endswith("loop.py"):
                break
        frame = frame.f_back
    if not chain:
        return "?", "?"
    path = Path(chain[0].f_code.co_filename).relative_to(PACKAGE_DIR)
    where = f"{path.as_posix()}:{chain[0].f_lineno}"
    stage = "train"
    for outer in reversed(chain[:-1]):  # outermost first, skipping the Trainer's own steps
        if not outer.f_code.co_qualname.startswith("Trainer."):
            stage = outer.f_code.co_qualname
            break
    return stage, where


def _describe(value: Any) -> Any:
    """A hashable summary of an argument: arrays by shape/dtype/strides, indices by type."""
    if isinstance(value, np.ndarray):
        return ("array", value.shape, value.dtype.str, value.strides)
    if isinstance(value, tuple | list):
        return tuple(_describe(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _describe(v)) for k, v in value.items()))
    if value is Ellipsis or value is None:
        return repr(value)
    return type(value).__name__


def _snapshot(value: Any, memo: dict) -> Any:
    """Plain-ndarray copies of the arguments (same layout; arrays that aliased still alias)."""
    if isinstance(value, np.ndarray):
        plain = value.view(np.ndarray)
        key = (plain.__array_interface__["data"][0], plain.shape, plain.strides)
        if key not in memo:
            memo[key] = np.array(plain, copy=True, order="K")
        return memo[key]
    if isinstance(value, tuple | list):
        return type(value)(_snapshot(v, memo) for v in value)
    if isinstance(value, dict):
        return {k: _snapshot(v, memo) for k, v in value.items()}
    return value


def _plain(value: Any) -> Any:
    return value.view(np.ndarray) if isinstance(value, CountedArray) else value


class CountedArray(np.ndarray):
    """An ndarray that, while a recorder is active, logs every ufunc call made on it (``+``, ``@``,
    ``-=``, ``np.exp``, reductions, ...) and every indexing operation (``a[...]``, ``a[...] = v``,
    ``a.T``). Results of ufuncs and views stay CountedArrays, so whole computations are followed."""

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        inputs = tuple(_plain(x) for x in inputs)
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(_plain(o) for o in out)
        func = getattr(ufunc, method)
        if _RECORDER is not None:
            op = f"np.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
            _RECORDER.log(op, "ufunc", func, inputs, kwargs)
        result = func(*inputs, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        if isinstance(result, np.ndarray):
            return result.view(CountedArray)
        return result

    def __getitem__(self, key: Any) -> Any:
        if _RECORDER is not None:
            _RECORDER.log("a[key]", "index", operator.getitem, (self, key), {})
        return super().__getitem__(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        global _RECORDER
        recorder = _RECORDER
        if recorder is not None:
            recorder.log("a[key] = v", "index", operator.setitem, (self, key, value), {})
            _RECORDER = None  # a subclass's slice assignment calls __getitem__: not a call of ours
        try:
            super().__setitem__(key, value)
        finally:
            _RECORDER = recorder

    @property
    def T(self) -> np.ndarray:
        if _RECORDER is not None:
            _RECORDER.log("a.T", "index", operator.attrgetter("T"), (self,), {})
        return super().T


class _CountingNumpy:
    """Stands in for ``np`` inside training.loop while counting, so that the trainer's own
    arrays (X, Z_epoch) are CountedArrays too; everything else is plain NumPy."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def ascontiguousarray(a: Any, dtype: Any = None) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=dtype).view(CountedArray)

    @staticmethod
    def empty(*args: Any, **kwargs: Any) -> np.ndarray:
        return np.empty(*args, **kwargs).view(CountedArray)


@contextmanager
def _recording() -> Iterator[_Recorder]:
    global _RECORDER
    _RECORDER = recorder = _Recorder()
    try:
        with mock.patch.object(train_module, "np", _CountingNumpy()):
            yield recorder
    finally:
        _RECORDER = None


def count_numpy_calls(sizes: Sequence[int], n_steps: int = 200) -> list[LoggedCall]:
    """Every call site of ``train()``'s epoch of ``n_steps`` steps, on a network whose arrays
    count calls; ``count / n_steps`` is per step where count >= n_steps (the rest: per epoch)."""
    X, y = make_data(sizes[0], n_steps, np.random.default_rng(DATA_SEED))
    net = dense_network(sizes)
    for layer in net.layers:
        if layer.params:  # dense: W, b and dW, db (views into theta / dtheta)
            for name in ("W", "b", "dW", "db"):
                setattr(layer, name, getattr(layer, name).view(CountedArray))
    cfg = TrainConfig(lr=LR, eps=0.0, max_iterations=n_steps, engine="numpy")
    with _recording() as recorder:
        train(net, X, y.view(CountedArray), 2, cfg, np.random.default_rng(SAMPLE_SEED))
    return list(recorder.calls.values())


@dataclass
class StepProfile:
    """The NumPy calls of one training step of our trainer, and what they cost replayed alone."""

    per_step: list[tuple[LoggedCall, float]]  # (call site, seconds of one replayed call)
    n_steps: int

    def calls(self, kind: str | None = None, stage: str | None = None) -> int:
        return sum(
            c.count // self.n_steps
            for c, _ in self.per_step
            if (kind is None or c.kind == kind) and (stage is None or c.stage == stage)
        )

    def seconds(self, stage: str | None = None, where: str | None = None) -> float:
        return sum(
            c.count / self.n_steps * t
            for c, t in self.per_step
            if (stage is None or c.stage == stage) and (where is None or c.where == where)
        )

    def by_line(self) -> dict[tuple[str, str], dict[str, int]]:
        """{(stage, file:line): {op: calls per step}}, in the order the calls were made."""
        lines: dict[tuple[str, str], dict[str, int]] = {}
        for c, _ in self.per_step:
            ops = lines.setdefault((c.stage, c.where), {})
            ops[c.op] = ops.get(c.op, 0) + c.count // self.n_steps
        return lines

    def stages(self) -> list[str]:
        return list(dict.fromkeys(c.stage for c, _ in self.per_step))


def profile_steps(
    cases: Sequence[NetCase], rounds: int, n_steps: int = 200
) -> tuple[dict[str, StepProfile], float]:
    """Count the calls of one step inside ``train()`` for each case, and time each distinct call
    replayed alone, together with ``a + b`` on tiny arrays. Returns (profiles, a + b seconds)."""
    sites = {}
    for case in cases:
        calls = count_numpy_calls(case.sizes, n_steps)
        sites[case.name] = [c for c in calls if c.count >= n_steps]
    fns = [c.replay for calls in sites.values() for c in calls]
    tiny_add = functools.partial(operator.add, np.ones(5), np.ones(5))  # NumPy's cost of a call
    with np.errstate(all="ignore"):
        *seconds, overhead = best_call_seconds([*fns, tiny_add], rounds, math.inf)[0]
    profiles = {}
    for name, calls in sites.items():
        profiles[name] = StepProfile(list(zip(calls, seconds[: len(calls)], strict=True)), n_steps)
        seconds = seconds[len(calls) :]
    return profiles, overhead


# --- The section ----------------------------------------------------------------------------------
def single_sample(opts: argparse.Namespace, console: Console) -> None:
    """Single-sample SGD steps/s: train() against the notebook's per-element loops."""
    cases = QUICK_CASES if opts.quick else CASES
    repeats = opts.repeats or (3 if opts.quick else 20)
    console.print(
        f"[bold]single-sample[/]: single-sample SGD steps per second, our trainer (train()) "
        f"against a port of the notebook's per-element loops; best of {repeats} timings each, "
        "interleaved (many short timings, so that some catch a quiet machine); "
        f"{N_SAMPLES} random samples, lr {LR}"
    )
    table = new_table(
        "Single-sample SGD, steps per second (higher is better)",
        ("net", "compiled steps/s", "numpy steps/s", "loops steps/s", "compiled / loops")
        + ("numpy / loops", "goal (compiled)", "met?"),
        left=("net", "met?"),
    )
    speeds: dict[str, tuple[float, float]] = {}  # the NumPy engine's and the loops' steps/s
    for case in cases:
        X, y = make_data(case.sizes[0], N_SAMPLES, np.random.default_rng(DATA_SEED))
        for engine in ("compiled", "numpy"):
            diff, moved = check_same_weights(case, X, y, engine)
            console.print(
                f"  {case.name}, {engine} engine: same weights as the loops after "
                f"{case.check_steps} steps (lr {CHECK_LR}): max |ours - loops| = {diff:.1e}, "
                f"while the weights moved by up to {moved:.2f}"
            )
        run_ours(case.sizes, X, y, 1_000, LR, "compiled")  # compiled (or loaded from the cache)
        numpy_steps = max(1_000, case.ours_steps // 100)
        compiled = numpy_ = loops = 0.0
        for _ in range(repeats):  # interleaved, so a busy neighbour slows every side alike
            compiled = max(compiled, run_ours(case.sizes, X, y, case.ours_steps, LR, "compiled")[1])
            numpy_ = max(numpy_, run_ours(case.sizes, X, y, numpy_steps, LR, "numpy")[1])
            loops = max(loops, run_loops(case.sizes, X, y, case.loop_steps, LR)[1])
        speeds[case.name] = numpy_, loops
        speedup = compiled / loops
        met = "[green]yes[/]" if speedup >= case.goal else "[red]no[/]"
        ratios = f"{speedup:,.0f}x", f"{numpy_ / loops:,.1f}x", f">= {case.goal:g}x", met
        table.add_row(case.name, *(f"{v:,.0f}" for v in (compiled, numpy_, loops)), *ratios)
    console.print(table)
    console.print(
        "  compiled: train.engine: compiled (nn/compiled.py), what auto picks for these nets; "
        "numpy: the NumPy layers (train.engine: numpy). The tables below profile the NumPy "
        "engine's step."
    )

    profiles, overhead = profile_steps(cases, rounds=5 if opts.quick else 25)
    calls_table = new_table(
        "NumPy calls in one step of our trainer (counted inside train())",
        ("net", "stage", "ufunc calls", "indexing ops", "replayed alone, µs"),
        left=("net", "stage"),
        caption=f"one NumPy call on 5-element arrays (a + b): {overhead * 1e6:.2f} µs",
    )
    for name, prof in profiles.items():
        for stage in [*prof.stages(), None]:  # None: the whole step
            label = stage or f"total (measured step: {1e6 / speeds[name][0]:.1f} µs)"
            counts = str(prof.calls("ufunc", stage)), str(prof.calls("index", stage))
            total = dict(style="bold", end_section=True) if stage is None else {}
            calls_table.add_row(name, label, *counts, f"{prof.seconds(stage) * 1e6:.1f}", **total)
    console.print(calls_table)

    if opts.verbose:
        for name, prof in profiles.items():
            detail = new_table(
                f"{name}: every NumPy call site of one step (replayed alone)",
                ("stage", "where", "NumPy calls per step", "µs", "source"),
                left=("stage", "where", "NumPy calls per step", "source"),
            )
            for (stage, where), sites in prof.by_line().items():
                file, line = where.rsplit(":", 1)
                source = linecache.getline(str(Path(PACKAGE_DIR) / file), int(line)).strip()
                ops = ", ".join(f"{op} x{n}" if n > 1 else op for op, n in sites.items())
                us = f"{prof.seconds(stage, where) * 1e6:.2f}"
                detail.add_row(stage, where, escape(ops), us, escape(source))
            console.print(detail)

    for name, prof in profiles.items():
        ours, loops = speeds[name]
        step_us, loop_us, numpy_us = 1e6 / ours, 1e6 / loops, prof.seconds() * 1e6
        n_calls = prof.calls()
        console.print(
            f"  {name}: {n_calls} NumPy calls per step ({prof.calls('ufunc')} ufunc calls + "
            f"{prof.calls('index')} indexing ops). Replayed alone they take {numpy_us:.1f} µs "
            f"({numpy_us / n_calls:.2f} µs per call on average; {n_calls} x {overhead * 1e6:.2f} "
            f"µs for a + b = {n_calls * overhead * 1e6:.1f} µs) of the {step_us:.1f} µs a step "
            f"takes; the other {step_us - numpy_us:.1f} µs are Python around the calls (method "
            f"calls, attribute lookups, loops). A loop-port step takes {loop_us:,.1f} µs."
        )
    console.print(
        "  So the NumPy engine's step on a tiny net is bound by the number of calls, whatever "
        "they compute; the compiled engine runs the same formulas as one loop per epoch."
    )
