"""Hostile input to ``scratchnn sweep``: each is refused at once with one ``error:`` line and
exit code 2 (never a traceback, never minutes of work), or capped where it is a request for too
much: --jobs beyond the work, a --scheduler that is not a Dask scheduler, --grid values nested
too deep or too many, a grid of 10^10 points, tampered sweep.yaml / config.yaml files, and the
sweep: key's whole numbers written 1e3 like every other integer of a spec."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import TINY_SWEEP, assert_one_line_error, invoke, require_dask

from scratchnn_cli.errors import RunFolderError, UserInputError
from scratchnn_cli.runs.folder import read_config_yaml
from scratchnn_cli.sweep import parse_grid_option, plan_sweep, read_plan
from scratchnn_cli.sweep.plan import MAX_SUB_RUNS
from scratchnn_cli.sweep.run import WORKERS_PER_CORE, worker_count

# two tiny points of 100 single-sample updates each: a sweep of them takes a second
SHORT = ["--set", "train.max_iterations=100", "--no-refit"]

# a YAML document that expands to 10^9 values from a few hundred bytes ("billion laughs")
ALIAS_BOMB = "\n".join(
    [f"a0: &a0 [{', '.join(['x'] * 10)}]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    + [""]
)


def write(folder: Path, text: str = TINY_SWEEP, name: str = "tiny.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def sweep(*args: object) -> Any:
    return invoke("sweep", *args)


def nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


# --------------------------------------------------------------------------- --jobs


class _RecordedParallel:
    """joblib.Parallel's stand-in: records ``n_jobs`` and runs the calls one after the other in
    this process (so the test counts the workers asked for without starting them)."""

    asked: list[int] = []

    def __init__(self, n_jobs: int, **kwargs: Any) -> None:
        self.asked.append(n_jobs)

    def __call__(self, calls: Any) -> Iterator[Any]:
        return (function(*args, **kwargs) for function, args, kwargs in calls)


@pytest.fixture
def recorded_parallel(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    import joblib

    monkeypatch.setattr(_RecordedParallel, "asked", [])
    monkeypatch.setattr(joblib, "Parallel", _RecordedParallel)
    return _RecordedParallel.asked


def test_jobs_beyond_the_sub_runs_start_one_worker_per_sub_run(
    tmp_path: Path, recorded_parallel: list[int]
) -> None:
    """Was: --jobs 64 started 64 processes for 2 sub-runs (--jobs 100000: minutes of starting
    workers); now 2, and the sweep says so."""
    grid = ["--grid", "train.lr=0.1,0.2"]
    result = sweep(write(tmp_path), *grid, "--jobs", 64, *SHORT, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert recorded_parallel == [2]
    assert "--jobs 64: 2 workers (2 sub-runs to train)" in result.output


def test_jobs_beyond_the_cores_are_capped(
    tmp_path: Path, recorded_parallel: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    import joblib

    monkeypatch.setattr(joblib, "cpu_count", lambda *args, **kwargs: 1)
    grid = ["--grid", "train.lr=0.1,0.2,0.3,0.4,0.5,0.6"]
    result = sweep(write(tmp_path), *grid, "--jobs", 100_000, *SHORT, "--runs-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert recorded_parallel == [WORKERS_PER_CORE]
    said = f"--jobs 100000: {WORKERS_PER_CORE} workers (at most {WORKERS_PER_CORE} per CPU core"
    assert said in result.output
    assert worker_count(-1, 6) == 1 and worker_count(-2, 6) == 1 and worker_count(3, 0) == 1


# --------------------------------------------------------------------------- --scheduler


@pytest.fixture
def http_server() -> Iterator[str]:
    """A plain HTTP server on loopback (a thread of this process): tcp://127.0.0.1:PORT."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_scheduler_that_is_no_dask_scheduler_is_refused_within_the_connect_limit(
    tmp_path: Path, http_server: str
) -> None:
    """Was: it waited forever for Dask's handshake (Dask's connect timeout does not cover it).
    A process of its own, so that a hang fails the test instead of stopping the suite."""
    require_dask()
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}
    scratchnn = str(Path(sys.executable).parent / "scratchnn")
    options = ["--backend", "dask", "--scheduler", http_server, "--runs-dir", tmp_path / "runs"]
    command = [scratchnn, "sweep", write(tmp_path), "--grid", "train.lr=0.1,0.2", *options]
    done = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: --scheduler {http_server}: "), lines[0]
    assert "Dask" in lines[0]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "address", ["notanaddress", "http://127.0.0.1:8786", "", "tcp://127.0.0.1:99999", "tcp://:1"]
)
def test_a_scheduler_that_is_no_address_is_one_line_exit_2(tmp_path: Path, address: str) -> None:
    """Was: an internal error (ValueError from Dask), or a local cluster for ''."""
    require_dask()
    options = ["--backend", "dask", "--scheduler", address, "--runs-dir", tmp_path / "runs"]
    line = assert_one_line_error(sweep(write(tmp_path), "--grid", "train.lr=0.1,0.2", *options))
    assert line.startswith(f"error: --scheduler {address!r}: not a Dask scheduler address"), line
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- --grid values


def test_grid_values_nested_too_deep_are_one_line_exit_2(tmp_path: Path) -> None:
    """Was: an internal RecursionError."""
    line = assert_one_line_error(
        sweep(write(tmp_path), "--grid", f"model.struct={nested(3000)}", "--runs-dir", tmp_path)
    )
    assert "--grid 'model.struct=[[[[" in line
    assert "the list of values is nested deeper than 50 levels" in line
    assert len(line) < 200  # the 6,000-character item is cut


def test_grid_values_that_expand_to_too_many_values_are_refused() -> None:
    """Was: accepted (the aliases share one list), then walked as 10^9 values."""
    text = ", ".join(f"&b{i} [{', '.join([f'*b{i - 1}' if i else '1'] * 10)}]" for i in range(9))
    with pytest.raises(UserInputError, match="the list of values expands to more than 100,000"):
        parse_grid_option([f"model.struct={text}"])


# --------------------------------------------------------------------------- grid size


def test_a_grid_of_ten_billion_points_is_refused_before_it_is_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: every one of 10^10 points listed (memory, then minutes)."""
    import sklearn.model_selection

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the grid was listed")

    monkeypatch.setattr(sklearn.model_selection, "ParameterGrid", never)
    grid = [f"--grid=train.k{key}={','.join(str(v) for v in range(10))}" for key in range(10)]
    line = assert_one_line_error(sweep(write(tmp_path), *grid, "--runs-dir", tmp_path / "runs"))
    assert "10 x 10 x 10 x 10 x 10 x 10 x 10 x 10 x 10 x 10 = 10,000,000,000 points" in line
    assert f"more than the {MAX_SUB_RUNS:,} sub-runs a sweep may train" in line


def test_folds_and_seeds_count_in_the_sub_runs(tmp_path: Path) -> None:
    values = ",".join(str(v / 1000) for v in range(1, 101))
    with pytest.raises(UserInputError, match=r"100 points x 10 folds x 20 seeds = 20,000 sub-runs"):
        plan_sweep(
            write(tmp_path), grid_options=[f"train.lr={values}"], cv=10, seeds=list(range(20))
        )
    plan = plan_sweep(write(tmp_path), grid_options=[f"train.lr={values}"], cv=10, random=10)
    assert len(plan.points) == 10


def test_a_random_sample_of_a_grid_beyond_64_bits_is_one_line_exit_2(tmp_path: Path) -> None:
    """Was: an internal OverflowError inside scikit-learn (it counts the grid in 64 bits)."""
    grid = [f"--grid=train.k{key}={','.join(str(v) for v in range(10))}" for key in range(20)]
    line = assert_one_line_error(
        sweep(write(tmp_path), *grid, "--random", 5, "--runs-dir", tmp_path / "runs")
    )
    assert "= 100,000,000,000,000,000,000 points" in line and "--random draws" in line


def test_a_plan_too_large_for_sweep_yaml_is_refused(tmp_path: Path) -> None:
    """Points that --resume could not read back from sweep.yaml are refused before it is
    written (was: written, then unreadable)."""
    big = ",".join(f"[{', '.join([str(v)] * 30_000)}]" for v in (1, 2))
    with pytest.raises(UserInputError, match="too large for sweep.yaml"):
        plan_sweep(write(tmp_path), grid_options=[f"model.struct={big}"])


# --------------------------------------------------------------------------- sweep: numbers


def test_the_sweep_key_takes_whole_numbers_written_1e3(tmp_path: Path) -> None:
    """Was: random: 1e3 or seeds: [1e3] refused, while every other integer key takes them."""
    spec = TINY_SWEEP + "sweep:\n  grid: {train.lr: [0.1, 0.2]}\n  random: 1e3\n  cv: 3.0\n"
    plan = plan_sweep(write(tmp_path, spec + "  seeds: [0, 1e3]\n"))
    assert (plan.random, plan.cv, plan.seeds) == (1000, 3, [0, 1000])
    assert type(plan.random) is int and type(plan.cv) is int
    for bad, message in [
        ("random: 1.5", "random: must be a whole number >= 1, not 1.5"),
        ("cv: 1e0", "cv: must be a whole number >= 2, not '1e0'"),
        ("seeds: [1.5]", "seeds: must be distinct whole numbers >= 0, not [1.5]"),
        ("seeds: [1e3, 1000]", "seeds: must be distinct whole numbers"),
        ("random: true", "random: must be a whole number >= 1, not True"),
    ]:
        path = write(tmp_path, TINY_SWEEP + f"sweep:\n  grid: {{train.lr: [0.1]}}\n  {bad}\n")
        with pytest.raises(UserInputError, match="^" + bad.split(":")[0]) as caught:
            plan_sweep(path)
        assert message in str(caught.value)


# --------------------------------------------------------------------------- tampered files


def _sweep_folder(tmp_path: Path) -> Path:
    """A sweep folder whose sweep.yaml is a real plan (nothing trained)."""
    from dataclasses import asdict

    from scratchnn_cli.runs import write_yaml

    plan = plan_sweep(write(tmp_path), grid_options=["train.lr=0.1,0.2"])
    folder = tmp_path / "sweep-tiny"
    folder.mkdir()
    write_yaml(folder / "sweep.yaml", asdict(plan))
    return folder


TAMPERED = {
    "alias bomb": (ALIAS_BOMB, "the YAML document expands to more than 100,000 values"),
    "5,000 deep": (f"x: {nested(5000)}\n", "the YAML document is nested deeper than 50 levels"),
    "2 MiB": ("#" + "x" * (2 << 20) + "\n", "is larger than 1 MiB"),
}


@pytest.mark.parametrize("tampered", TAMPERED)
def test_a_tampered_sweep_yaml_is_refused(tmp_path: Path, tampered: str) -> None:
    """Was: an alias bomb or a huge file read whole, 5,000 levels an internal RecursionError."""
    folder = _sweep_folder(tmp_path)
    text, message = TAMPERED[tampered]
    inside_base = "".join(f"  {line}\n" for line in text.splitlines())  # keys SweepPlan takes
    plan_text = (folder / "sweep.yaml").read_text(encoding="utf-8")
    assert "\nbase:\n  " in plan_text
    plan_text = plan_text.replace("\nbase:\n", "\nbase:\n" + inside_base, 1)
    (folder / "sweep.yaml").write_text(plan_text, encoding="utf-8")
    with pytest.raises(RunFolderError, match=message) as caught:
        read_plan(folder)
    assert str(folder / "sweep.yaml") in str(caught.value)


def test_a_sweep_yaml_nested_too_deep_is_one_line_exit_2(tmp_path: Path) -> None:
    folder = _sweep_folder(tmp_path)
    plan_text = (folder / "sweep.yaml").read_text(encoding="utf-8")
    (folder / "sweep.yaml").write_text(f"x: {nested(5000)}\n{plan_text}", encoding="utf-8")
    line = assert_one_line_error(sweep("--resume", folder))
    assert line.startswith(f"error: {folder / 'sweep.yaml'}: unreadable (the YAML document is")


@pytest.mark.parametrize("tampered", TAMPERED)
def test_a_tampered_config_yaml_is_refused(tmp_path: Path, tampered: str) -> None:
    text, message = TAMPERED[tampered]
    path = write(tmp_path, text + TINY_SWEEP, "config.yaml")
    with pytest.raises(RunFolderError, match=message) as caught:
        read_config_yaml(path)
    assert str(path) in str(caught.value)
