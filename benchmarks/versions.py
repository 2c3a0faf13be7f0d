"""Is the current code "no slower" than an earlier version? The same timing snippet, run by two
interpreters: this one (``sys.executable``, the current code) and ``--baseline-python`` (a
virtual environment with the earlier version installed, e.g. the one ``make bench-versions``
builds under ``.bench-baseline/``).

The cases (``CASES``, seeded: both versions get the same data and weights) and the two clocks
(``result.seconds``, and the child's CPU time around ``train()``, which preemption hurts less) are
printed. Each measurement is a fresh ``python -I`` run outside the repository (so the baseline
cannot import this checkout) with one BLAS thread: a warm-up run, then the timed one; the versions
alternate and the best of ``--repeats`` is kept. ``ok`` when new/old <= 1 + ``--tolerance``.

Usage: ``python benchmarks/versions.py --baseline-python PATH [--repeats 5] [--cases a,c]``
(default a-d; ``e``, the CNN, needs a baseline with layer lists: ``make bench-versions
CASES=abcde``)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from common import BESIDE_PROJECT

# Runs in both interpreters: only the API the two versions share (see the module docstring).
SNIPPET = r"""
import json, sys, time
import numpy as np
import scratchnn_cli
from scratchnn_cli.config import TrainConfig
from scratchnn_cli.nn.network import Network
try:
    from scratchnn_cli.training import train  # after the layer-list refactor
except ImportError:
    from scratchnn_cli.train import train  # before it

spec = json.loads(sys.argv[1])


def data():
    if spec["data"] == "fashion":
        try:
            from scratchnn_cli.data import load_fashion_mnist

            X_train, y_train, _, _ = load_fashion_mnist(download=False)
            n = spec["n"]
            X = X_train[:n].reshape(n, *spec.get("image", [-1])).astype(np.float32)
            X /= np.float32(255)
            return X, np.asarray(y_train[:n], dtype=np.int64), "fashion-mnist"
        except Exception as exc:  # noqa: BLE001 - any failure: fall back to random data
            source = f"random ({type(exc).__name__})"
    else:
        source = "random"
    rng = np.random.default_rng(1)
    X = rng.random((spec["n"], *spec.get("image", [spec["n_features"]])))
    if spec["n_outputs"] == 1:
        y = (np.sum((X - 0.5) ** 2, axis=1) < 0.5 * spec["n_features"] / 6).astype(np.int64)
    else:
        y = rng.integers(0, spec["n_outputs"], size=spec["n"])
    return X, y, source


def network():
    rng, dtype, n_outputs = np.random.default_rng(0), np.dtype(spec["dtype"]), spec["n_outputs"]
    if "layers" in spec:  # a layer list: [kind, {options}] each
        from scratchnn_cli.nn import layers as L

        kinds = {"conv2d": L.Conv2D, "relu": L.ReLU, "maxpool2d": L.MaxPool2D, "flatten": L.Flatten}
        layers = [kinds[kind](**options) for kind, options in spec["layers"]]
        shape = tuple(spec["image"])
        return Network.from_layers(
            layers, shape, n_outputs, spec["output"], rng=rng, init="he", dtype=dtype
        )
    short_form = getattr(Network, "from_struct", None) or Network.build  # before 0.2.0
    return short_form(
        spec["n_features"], spec["struct"], n_outputs, activation=spec["activation"],
        output=spec["output"], rng=rng, dtype=dtype,
    )


def run(X, y, epochs):
    net = network()
    cfg = TrainConfig.model_validate({**spec["cfg"], "eps": 0, "max_epochs": epochs})
    n_classes = max(2, spec["n_outputs"])
    cpu = time.process_time()
    result = train(net, X, y, n_classes, cfg, np.random.default_rng(2))
    cpu = time.process_time() - cpu
    assert result.epochs == epochs, (result.epochs, result.stop_reason)
    return result, cpu


X, y, source = data()
X = X.astype(spec["dtype"])
warm = spec["warmup"]
run(X[:warm], y[:warm], 1)
result, cpu = run(X, y, spec["epochs"])
print(json.dumps({
    "seconds": result.seconds,
    "cpu_seconds": cpu,
    "iterations": result.iterations,
    "cost": float(result.history[-1].cost),
    "source": source,
    "package": scratchnn_cli.__file__,
    "numpy": np.__version__,
}))
"""


@dataclass(frozen=True)
class Case:
    key: str
    name: str
    unit: str  # "steps/s" (higher is better) or "s/epoch" (lower is better)
    spec: dict

    def value(self, run: dict, clock: str) -> float:
        """The number shown: steps per second, or seconds per 60,000-sample epoch."""
        if self.unit == "steps/s":
            return run["iterations"] / run[clock]
        return run[clock] / self.spec["epochs"] * 60_000 / self.spec["n"]

    def time(self, run: dict, clock: str) -> float:
        """Seconds per unit of work: what is compared (lower is better)."""
        return run[clock] / run["iterations"]

    def best(self, runs: dict, clock: str) -> dict[str, dict]:
        """The fastest run of each version by ``clock``."""
        return {v: min(runs[self.key, v], key=lambda r: self.time(r, clock)) for v in VERSIONS}


SGD = {"lr": 0.1, "batch_size": 1, "sampling": "random", "optimizer": {"name": "sgd"}}
ADAM_B128 = {"lr": 0.001, "batch_size": 128, "sampling": "shuffle", "optimizer": {"name": "adam"}}
SGD_B64 = {"lr": 0.01, "batch_size": 64, "sampling": "shuffle", "optimizer": {"name": "sgd"}}


def sigmoid_sgd(key: str, sizes: tuple[int, ...], n: int, epochs: int) -> Case:
    """Single-sample SGD of a sigmoid net on ``n`` random samples, ``epochs`` epochs."""
    name = f"sgd {'-'.join(map(str, sizes))} ({n * epochs:,} steps)"
    spec = {"data": "random", "n": n, "n_features": sizes[0], "struct": list(sizes[1:-1])}
    spec |= {"n_outputs": 1, "activation": "sigmoid", "output": "sigmoid", "dtype": "float64"}
    return Case(key, name, "steps/s", {**spec, "cfg": SGD, "epochs": epochs, "warmup": n})


def mlp(key: str, dtype: str, cfg: dict) -> Case:
    """The 784-256-128-10 ReLU/softmax MLP on 20,000 images, 2 epochs."""
    short = f"{dtype.replace('float', 'f')} {cfg['optimizer']['name']} b{cfg['batch_size']}"
    spec = {"data": "fashion", "n": 20_000, "n_features": 784, "struct": [256, 128]}
    spec |= {"n_outputs": 10, "activation": "relu", "output": "softmax", "dtype": dtype}
    name = f"mlp 784-256-128-10 {short}"
    return Case(key, name, "s/epoch", {**spec, "cfg": cfg, "epochs": 2, "warmup": 2_000})


def conv16_conv32(key: str) -> Case:
    """conv 16 3x3 same -> relu -> maxpool 2 -> conv 32 3x3 same -> relu -> maxpool 2 -> flatten
    -> softmax 10, float32, Adam, batch 128, on 5,120 images (40 updates), 1 epoch."""
    layers = []
    for filters in (16, 32):
        conv = ["conv2d", {"filters": filters, "kernel": 3, "padding": "same"}]
        layers += [conv, ["relu", {}], ["maxpool2d", {"size": 2}]]
    spec = {"data": "fashion", "n": 5_120, "n_features": 784, "image": [28, 28, 1]}
    spec |= {"layers": [*layers, ["flatten", {}]], "n_outputs": 10, "output": "softmax"}
    spec |= {"dtype": "float32", "cfg": ADAM_B128, "epochs": 1, "warmup": 512}
    return Case(key, "cnn conv16-conv32 f32 adam b128", "s/epoch", spec)


CASES = (
    sigmoid_sgd("a", (2, 5, 1), n=250, epochs=40),
    sigmoid_sgd("b", (784, 10, 5, 1), n=500, epochs=10),
    mlp("c", "float32", ADAM_B128),
    mlp("d", "float64", SGD_B64),
    conv16_conv32("e"),
)


VERSIONS = ("old", "new")  # the order of each round
CLOCKS = {  # key of the child's JSON -> table title
    "seconds": "wall time (result.seconds, as train() measures it)",
    "cpu_seconds": "CPU time of the child process around train() (less hurt by a busy machine)",
}


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    if env.get("SCRATCHNN_DATA"):  # absolute: the children run in a temporary folder
        env["SCRATCHNN_DATA"] = os.path.abspath(env["SCRATCHNN_DATA"])
    elif BESIDE_PROJECT.is_dir():
        env["SCRATCHNN_DATA"] = str(BESIDE_PROJECT)
    return env


def measure(python: str, case: Case, env: dict[str, str], cwd: str) -> dict:
    """One fresh interpreter: warm-up run, then the timed run; its JSON line."""
    proc = subprocess.run(
        [python, "-I", "-c", SNIPPET, json.dumps(case.spec)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"{python} failed on case {case.key} ({case.name}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt(case: Case, value: float) -> str:
    return f"{value:,.0f} steps/s" if case.unit == "steps/s" else f"{value:.3f} s/epoch"


def table(cases: list[Case], runs: dict, clock: str, tolerance: float) -> bool:
    """Print the table of the best run of each version by ``clock``; True when all are ok."""
    header = ("case", "old", "new", "new/old", "verdict")
    rows, all_ok = [], True
    for case in cases:
        best = case.best(runs, clock)
        ratio = case.time(best["new"], clock) / case.time(best["old"], clock)
        ok = ratio <= 1 + tolerance
        all_ok &= ok
        old, new = (fmt(case, case.value(best[version], clock)) for version in VERSIONS)
        verdict = "ok" if ok else "SLOWER"
        rows.append((f"{case.key}) {case.name}", old, new, f"{ratio:.3f}", verdict))
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return all_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-python", required=True, help="python of the old version")
    parser.add_argument("--repeats", type=int, default=5, help="rounds; best of them is kept")
    parser.add_argument("--cases", default="abcd", help="which cases, e.g. 'a' or 'a,c'")
    parser.add_argument("--tolerance", type=float, default=0.05, help="allowed slowdown")
    parser.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="seconds",
        help="whose verdict sets the exit status: train()'s wall time or the CPU time",
    )
    args = parser.parse_args(argv)
    cases = [c for c in CASES if c.key in args.cases]
    # absolute, not resolved: the children run in a temporary folder, and a venv's python is a
    # symlink whose target would not know the venv
    baseline = os.path.abspath(args.baseline_python)
    versions = dict(zip(VERSIONS, (baseline, sys.executable), strict=True))
    env = child_env()
    runs: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as cwd:  # not the repository: see the docstring
        for r in range(args.repeats):
            for case in cases:
                for version, python in versions.items():  # interleaved: old, new, old, new
                    run = measure(python, case, env, cwd)
                    runs.setdefault((case.key, version), []).append(run)
                    print(
                        f"round {r + 1}/{args.repeats}  {case.key} {version}: "
                        f"{fmt(case, case.value(run, 'seconds'))}, "
                        f"cpu {fmt(case, case.value(run, 'cpu_seconds'))}",
                        file=sys.stderr,
                        flush=True,
                    )

    for version, python in versions.items():
        first = runs[(cases[0].key, version)][0]
        print(f"{version}: {python} -> {first['package']} (numpy {first['numpy']})")
    failed = False
    for clock, title in CLOCKS.items():
        print(f"\n{title}, best of {args.repeats}, 1 BLAS thread; new/old = ratio of the times")
        ok = table(cases, runs, clock, args.tolerance)
        failed |= clock == args.clock and not ok
    for case in cases:
        best = case.best(runs, args.clock)
        if best["old"]["cost"] != best["new"]["cost"]:
            print(
                f"{case.key}: final costs differ: old {best['old']['cost']!r}, "
                f"new {best['new']['cost']!r}"
            )
        sources = {run["source"] for v in versions for run in runs[(case.key, v)]}
        if sources != {"random"}:
            print(f"{case.key}: data = {', '.join(sorted(sources))}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
