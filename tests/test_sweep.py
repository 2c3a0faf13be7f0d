"""``scratchnn sweep``: grid and random points, cross-validation folds (disjoint, covering
train + val, stratified; the test split never seen), --jobs 2 equal to --jobs 1, a diverging
point reported while the sweep goes on, --resume after an interruption, the refit scored once on
test, a Dask LocalCluster equal to the local run, and the summary with or without CV.

--seeds: every point and fold trained with each seed, on the same folds (``data.seed`` keeps the
sweep's split); the point's score is the mean over all its sub-runs; bad seeds and a ``seed``
grid key are refused; sweep folders without seeds still read.

Limits: careless or hostile input is refused at once with one ``error:`` line and exit code 2
(never a traceback, never minutes of work), or capped where it is a request for too much: --jobs
beyond the work, a --scheduler that is not a Dask scheduler, --grid values nested too deep or too
many, a grid of 10^10 points, tampered sweep.yaml / config.yaml files, and the sweep: key's whole
numbers written 1e3 like every other integer of a spec."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import (
    TINY_SWEEP,
    assert_one_line_error,
    invoke,
    loopback_cluster,
    read_json,
    require_dask,
)
from rich.console import Console

from scratchnn_cli import experiment
from scratchnn_cli.config import load_config, validate_config
from scratchnn_cli.data import load_dataset
from scratchnn_cli.data.splits import kfold_indices
from scratchnn_cli.errors import RunFolderError, UserInputError
from scratchnn_cli.runs.folder import read_config_yaml
from scratchnn_cli.sweep import (
    expand_points,
    parse_grid_option,
    plan_sweep,
    point_spec,
    read_plan,
    sub_run_name,
    sub_run_spec,
)
from scratchnn_cli.sweep.plan import MAX_SUB_RUNS
from scratchnn_cli.sweep.run import WORKERS_PER_CORE, worker_count

# circles500: 250 / 125 / 125 rows; 3-fold CV trains on 250 rows: 1,000 updates = 4 epochs
TINY = TINY_SWEEP
GRID = ["--grid", "train.lr=0.3,0.03", "--grid", "model.struct=[3],[6]"]


def write(folder: Path, text: str = TINY, name: str = "tiny.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def sweep(*args: object) -> Any:
    return invoke("sweep", *args)


def the_sweep(runs_dir: Path) -> Path:
    (found,) = [p for p in runs_dir.iterdir() if p.name.startswith("sweep-")]
    return found


def results(sweep_dir: Path) -> pd.DataFrame:
    """results.csv without the seconds column (timing is the one thing that may differ)."""
    return pd.read_csv(sweep_dir / "results.csv").drop(columns="seconds")


def sub_runs(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir() and "-p" in p.name)


# --------------------------------------------------------------------------- the points


def test_grid_values_are_yaml_and_points_set_keys_like_set(tmp_path: Path) -> None:
    grid = parse_grid_option(["train.lr=0.1,0.01,0.001", "model.struct=[5],[10],[10,5]"])
    assert grid == {"train.lr": [0.1, 0.01, 0.001], "model.struct": [[5], [10], [10, 5]]}
    points = expand_points(grid, None, 0)
    assert len(points) == 9
    assert all(list(p) == ["train.lr", "model.struct"] for p in points)
    assert {(p["train.lr"], tuple(p["model.struct"])) for p in points} == {
        (lr, tuple(s)) for lr in grid["train.lr"] for s in grid["model.struct"]
    }
    plan = plan_sweep(write(tmp_path), grid_options=["train.lr=0.5"])
    config = validate_config(point_spec(plan, {"train.lr": 0.01, "model.struct": [10, 5]}), "p")
    assert config.train.lr == 0.01 and config.model.struct == [10, 5]
    assert config.model.sigma == 0.5  # the rest of the base spec stays


def test_random_points_are_a_seeded_sample_without_repeats() -> None:
    grid = {"train.lr": [0.1, 0.01, 0.001], "model.struct": [[5], [10], [10, 5]]}
    drawn = expand_points(grid, 4, seed=0)
    assert len(drawn) == 4
    assert len({json.dumps(p) for p in drawn}) == 4
    every = {json.dumps(p) for p in expand_points(grid, None, 0)}
    assert {json.dumps(p) for p in drawn} <= every
    assert expand_points(grid, 4, seed=0) == drawn
    assert expand_points(grid, 4, seed=1) != drawn
    assert len(expand_points(grid, 50, seed=0)) == 9  # never more than the grid holds


def test_the_sweep_key_of_a_spec_and_the_options_that_win(tmp_path: Path) -> None:
    text = TINY + "sweep:\n  grid:\n    train.lr: [0.5, 0.05]\n    model.struct: [[3]]\n  cv: 4\n"
    path = write(tmp_path, text)
    plan = plan_sweep(path, grid_options=["train.lr=0.2,0.02,0.002"], random=2)
    assert plan.grid == {"train.lr": [0.2, 0.02, 0.002], "model.struct": [[3]]}
    assert plan.cv == 4 and plan.random == 2 and len(plan.points) == 2
    assert "sweep" not in plan.base
    assert load_config(path).train.lr == 0.1  # train ignores the sweep key
    assert sweep(path, "--cv", 1, "--runs-dir", tmp_path / "runs").exit_code == 2


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "nothing to sweep"),
        (["--grid", "train.lr"], "expected key.path=v1,v2"),
        (["--grid", "train.lrr=0.1,0.2"], "train.lrr"),
        (["--grid", "seed=1,2"], "--seeds"),
        (["--grid", "train.lr=0.1", "--jobs", "0"], "--jobs"),
        (["--grid", "train.lr=0.1", "--grid", "train.lr=0.2"], "--grid train.lr: given twice"),
        (["--grid", "train..lr=0.1,0.2"], "sweep grid 'train..lr=0.1': empty part"),
        (["--grid", "train.lr=0.1,0.1"], "sweep grid train.lr: the value 0.1 is listed twice"),
        (["--grid", "model.struct=[5],[5]"], "sweep grid model.struct: the value [5] is listed"),
        (
            ["--grid", "train.lr=0.1", "--scheduler", "tcp://127.0.0.1:1"],
            "--scheduler: a Dask scheduler needs --backend dask",
        ),
        (  # was: sweep.yaml left in a new sweep folder (auto engine), or 2,000 failed sub-runs
            ["--grid", "train.lr=0.1,0.2", "--cv", "1000"],
            "point 0 (train.lr=0.1): data.cv: circles500: 1000 folds need at least 1000 rows",
        ),
    ],
)
def test_bad_sweeps_are_refused_with_one_line_and_nothing_written(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = sweep(write(tmp_path), *args, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# --------------------------------------------------------------------------- the folds


@pytest.mark.parametrize("dataset", ["circles500", "blobs400"])
def test_folds_are_disjoint_stratified_and_cover_train_and_val(dataset: str) -> None:
    plain = load_config_text(TINY.replace("circles500", dataset))
    whole = load_dataset(plain.data, plain.seed)
    pooled = rows(np.concatenate([whole.X_train, whole.X_val]))
    y_pooled = np.concatenate([whole.y_train, whole.y_val])
    held_out: list[set[tuple[float, ...]]] = []
    for fold in range(5):
        cv = {"folds": 5, "fold": fold}
        data = type(plain.data).model_validate({**plain.data.model_dump(), "cv": cv})
        part = load_dataset(data, plain.seed)
        assert len(part.y_test) == 0  # the test split stays out
        train, val = rows(part.X_train), rows(part.X_val)
        assert not train & val and train | val == pooled
        assert len(part.y_train) + len(part.y_val) == len(y_pooled)
        for label in np.unique(y_pooled):  # stratified: each class split 4 : 1, within a row
            share = np.sum(y_pooled == label) / 5
            assert abs(np.sum(part.y_val == label) - share) < 1
        held_out.append(val)
    assert sum(len(v) for v in held_out) == len(pooled)
    assert set().union(*held_out) == pooled
    folds = kfold_indices(y_pooled, 5, 123)
    assert np.array_equal(np.sort(np.concatenate([f[1] for f in folds])), np.arange(len(y_pooled)))


def load_config_text(text: str) -> Any:
    return validate_config(yaml.safe_load(text), "test")


def rows(X: np.ndarray) -> set[tuple[float, ...]]:
    return {tuple(r) for r in X}


def test_a_fold_beyond_the_folds_and_cv_with_train_on_train_val_are_refused() -> None:
    raw = yaml.safe_load(TINY)
    raw["data"]["cv"] = {"folds": 5, "fold": 5}
    with pytest.raises(Exception, match="fold 5"):
        validate_config(raw, "t")
    raw["data"].update(cv={"folds": 5, "fold": 1}, train_on="train+val")
    with pytest.raises(Exception, match="train_on: train"):
        validate_config(raw, "t")


# --------------------------------------------------------------------------- whole sweeps


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: a 2 x 2 grid, 3-fold CV, --jobs 1, with the refit."""
    folder = tmp_path_factory.mktemp("serial")
    result = sweep(write(folder), *GRID, "--cv", 3, "--runs-dir", folder / "runs")
    assert result.exit_code == 0, result.output
    return the_sweep(folder / "runs")


def test_a_sweep_writes_its_folder_and_never_sees_test(serial: Path) -> None:
    for name in ("sweep.yaml", "results.csv", "summary.md", "sweep.png", "best.yaml"):
        assert (serial / name).is_file(), name
    frame = pd.read_csv(serial / "results.csv")
    assert list(frame["point"]) == [0, 1, 2, 3] and set(frame["status"]) == {"completed"}
    assert {"train.lr", "model.struct", "mean_val_accuracy", "std_val_accuracy"} <= set(frame)
    subs = sub_runs(serial)
    assert len(subs) == 4 * 3
    for run_dir in subs:
        metrics = read_json(run_dir / "metrics.json")
        assert set(metrics) == {"train", "val"}, run_dir  # no test entry during the sweep
        assert read_json(run_dir / "run.json")["data"]["n_test"] == 0
        assert not (run_dir / "learning_curve.png").exists()  # sub-runs skip their PNGs
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["data"]["cv"]["folds"] == 3 and config["data"]["train_on"] == "train"
    mean = np.mean([read_json(r / "metrics.json")["val"]["accuracy"] for r in subs[:3]])
    assert frame["mean_val_accuracy"][0] == pytest.approx(mean)
    best = frame.loc[frame["mean_val_accuracy"].idxmax()]
    spec = yaml.safe_load((serial / "best.yaml").read_text())
    assert "sweep" not in spec and "cv" not in spec["data"]
    assert spec["train"]["lr"] == best["train.lr"]
    assert json.dumps(spec["model"]["struct"]) == best["model.struct"]
    assert spec["data"]["train_on"] == "train+val"
    assert (serial / "sweep.png").read_bytes().startswith(b"\x89PNG")


def test_the_refit_scores_test_exactly_once(serial: Path) -> None:
    scored = [p for p in serial.iterdir() if p.is_dir() and "test" in read_json(p / "metrics.json")]
    assert [p.name.endswith("-tiny-best") for p in scored] == [True]
    refit = read_json(scored[0] / "metrics.json")
    assert refit["test"]["n"] == 125
    assert f"{refit['test']['accuracy']:.4f}" in (serial / "summary.md").read_text()
    config = load_config(serial / "best.yaml")
    assert config.data.train_on == "train+val"
    assert yaml.safe_load((scored[0] / "config.yaml").read_text())["data"]["train_on"] == (
        "train+val"
    )


@pytest.mark.slow
def test_two_jobs_give_the_results_of_one(serial: Path, tmp_path: Path) -> None:
    result = sweep(
        write(tmp_path), *GRID, "--cv", 3, "--jobs", 2, "--no-refit", "--runs-dir", tmp_path
    )
    assert result.exit_code == 0, result.output
    parallel = the_sweep(tmp_path)
    pd.testing.assert_frame_equal(results(parallel), results(serial))
    assert (parallel / "best.yaml").read_text() == (serial / "best.yaml").read_text()
    assert not [p for p in parallel.iterdir() if p.name.endswith("-best")]  # --no-refit


def test_a_diverging_point_is_reported_and_the_sweep_goes_on(tmp_path: Path) -> None:
    result = sweep(
        write(tmp_path),
        "--grid",
        "train.lr=0.3,1e6,0.03",
        "--set",
        "model.sigma=30",
        "--cv",
        2,
        "--runs-dir",
        tmp_path,
    )
    assert result.exit_code == 3, result.output
    assert "point 1 (train.lr=1e6) fold 0: diverged" in result.output
    assert "not completed: point 1 (train.lr=1e6): diverged" in result.output
    frame = pd.read_csv(the_sweep(tmp_path) / "results.csv")
    assert list(frame["status"]) == ["completed", "diverged", "completed"]
    assert "diverged" in frame["note"][1]
    assert "refit of best.yaml: test accuracy" in result.output
    spec = yaml.safe_load((the_sweep(tmp_path) / "best.yaml").read_text())
    assert spec["train"]["lr"] in (0.3, 0.03)


def test_an_invalid_point_is_recorded_and_the_others_run(tmp_path: Path) -> None:
    result = sweep(
        write(tmp_path), "--grid", "model.struct=[3],[0]", "--no-refit", "--runs-dir", tmp_path
    )
    assert result.exit_code == 3, result.output
    frame = pd.read_csv(the_sweep(tmp_path) / "results.csv")
    assert list(frame["status"]) == ["completed", "invalid"]
    assert "model.struct" in frame["note"][1]


def test_a_point_whose_data_is_unusable_is_recorded_invalid(tmp_path: Path) -> None:
    result = sweep(
        write(tmp_path), "--grid", "data.classes=[0,1],[0,5]", "--no-refit", "--runs-dir", tmp_path
    )
    assert result.exit_code == 3, result.output
    frame = pd.read_csv(the_sweep(tmp_path) / "results.csv")
    assert list(frame["status"]) == ["completed", "invalid"]  # was: failed, its sub-run trained
    assert "unknown class 5 in circles500" in frame["note"][1]
    (trained,) = sub_runs(the_sweep(tmp_path))
    assert "-p000-" in trained.name


@pytest.mark.slow
def test_resume_after_an_interruption_ends_like_an_uninterrupted_sweep(
    serial: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the 5th sub-run (point 1, fold 1) at its 2nd epoch; then one finished
    sub-run loses its run.json: --resume resumes the first from its checkpoint, trains the
    second again, keeps the rest, and writes the same results.csv as the uninterrupted sweep."""
    real_train = experiment.train
    calls = []

    def train(*args: Any, hooks: Any, **kwargs: Any) -> Any:
        calls.append(1)
        on_epoch = hooks.on_epoch
        if len(calls) == 5:

            def stop_at_2(record: Any) -> None:
                on_epoch(record)
                if record.epoch == 2:
                    raise KeyboardInterrupt

            hooks.on_epoch = stop_at_2
        return real_train(*args, hooks=hooks, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(experiment, "train", train)
        stopped = sweep(write(tmp_path), *GRID, "--cv", 3, "--runs-dir", tmp_path)
    assert stopped.exit_code == 130, stopped.output
    sweep_dir = the_sweep(tmp_path)
    assert not (sweep_dir / "results.csv").exists()
    # the sweep's command to go on (not the sub-run's), and no 'error:' prefix
    said = " ".join(stopped.output.split())
    assert f"interrupted: finish it with: scratchnn sweep --resume {sweep_dir}" in said, said
    assert "train --resume" not in said and "error:" not in said
    subs = sub_runs(sweep_dir)
    assert len(subs) == 5
    assert read_json(subs[4] / "run.json")["status"] == "interrupted"
    (subs[1] / "run.json").unlink()  # a sub-run whose run.json is lost: trained again

    resumed = sweep("--resume", sweep_dir)
    assert resumed.exit_code == 0, resumed.output
    pd.testing.assert_frame_equal(results(sweep_dir), results(serial))
    info = read_json(subs[4] / "run.json")
    assert info["status"] == "completed" and info["resumed"][0]["from_epoch"] >= 1
    assert not list(subs[4].glob("*.png"))  # a resumed sub-run draws no PNGs either
    assert len(sub_runs(sweep_dir)) == 12
    assert (sweep_dir / "best.yaml").read_text() == (serial / "best.yaml").read_text()
    again = sweep("--resume", sweep_dir)  # nothing left to do: every sub-run is kept
    assert again.exit_code == 0, again.output
    pd.testing.assert_frame_equal(results(sweep_dir), results(serial))


def test_resume_refuses_a_folder_that_is_not_a_sweep(tmp_path: Path) -> None:
    result = sweep("--resume", tmp_path)
    assert result.exit_code == 2 and "not a sweep folder" in result.output
    assert sweep("--resume", tmp_path, "--cv", 3).exit_code == 2


def _corrupt_sweep_yaml(sweep_dir: Path) -> str:
    (sweep_dir / "sweep.yaml").write_bytes(b"\xe6\x00\xff garbage")
    return f"cannot read config {sweep_dir / 'sweep.yaml'}: 'utf-8' codec can't decode byte 0xe6"


def _sweep_yaml_cv_text(sweep_dir: Path) -> str:
    text = (sweep_dir / "sweep.yaml").read_text(encoding="utf-8")
    (sweep_dir / "sweep.yaml").write_text(text.replace("cv: 3", "cv: abc"), encoding="utf-8")
    return f"{sweep_dir / 'sweep.yaml'}: not a valid sweep plan (cv: must be a whole number >= 2"


def _corrupt_sub_run_json(sweep_dir: Path) -> str:
    first = sub_runs(sweep_dir)[0]
    (first / "run.json").write_bytes(b"\xb9 not json")
    return f"{first / 'run.json'}: unreadable ('utf-8' codec can't decode byte 0xb9"


@pytest.mark.parametrize(
    "corrupt", [_corrupt_sweep_yaml, _sweep_yaml_cv_text, _corrupt_sub_run_json]
)
def test_resume_of_a_corrupt_sweep_folder_is_one_line_exit_2(
    serial: Path, tmp_path: Path, corrupt: Any
) -> None:
    copy = tmp_path / serial.name
    shutil.copytree(serial, copy)
    expected = corrupt(copy)
    before = sorted(p.relative_to(copy) for p in copy.rglob("*"))
    result = sweep("--resume", copy, "--no-refit")  # was: exit 1, an internal error
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {expected}"), result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == before


# --------------------------------------------------------------------------- dask


@pytest.mark.slow
def test_a_dask_local_cluster_gives_the_local_results(serial: Path, tmp_path: Path) -> None:
    """A real LocalCluster on loopback (one single-threaded worker in this process), reached
    through --scheduler tcp://127.0.0.1:PORT like a remote one. Without dask installed this
    fails under CI=true (make install installs the dask extra) and is skipped elsewhere."""
    with loopback_cluster() as address:
        assert address.startswith("tcp://127.0.0.1:")
        result = sweep(
            write(tmp_path),
            *GRID,
            "--cv",
            3,
            "--backend",
            "dask",
            "--scheduler",
            address,
            "--runs-dir",
            tmp_path,
        )
    assert result.exit_code == 0, result.output
    dask_dir = the_sweep(tmp_path)
    pd.testing.assert_frame_equal(results(dask_dir), results(serial))
    refit = next(p for p in dask_dir.iterdir() if p.name.endswith("-best"))
    reference = next(p for p in serial.iterdir() if p.name.endswith("-best"))
    assert read_json(refit / "metrics.json") == read_json(reference / "metrics.json")
    shutil.rmtree(dask_dir)


@pytest.mark.parametrize("n_params", [1, 2, 3])
def test_the_sweep_plot_draws_any_number_of_keys_with_missing_points(n_params: int) -> None:
    from scratchnn_cli.report.plots import sweep_png

    grid = {"train.lr": [0.1, 0.01], "model.struct": [[5], [10, 5]], "train.l2": [0, 0.1]}
    params = list(grid)[:n_params]
    points = expand_points({k: grid[k] for k in params}, None, 0)
    frame = pd.DataFrame(
        [{k: json.dumps(v) if isinstance(v, list) else v for k, v in p.items()} for p in points]
    )
    frame["mean_val_accuracy"] = np.linspace(0.5, 0.9, len(frame))
    frame.loc[0, "mean_val_accuracy"] = None  # a failed point: a blank cell or a gap
    png = sweep_png(frame, params, "mean_val_accuracy", "t", "validation accuracy")
    assert png.startswith(b"\x89PNG")


@pytest.mark.slow
def test_an_unreachable_scheduler_is_one_line_exit_2_and_nothing_written(tmp_path: Path) -> None:
    """Nobody listens on the port: refused before any folder is made (Dask's connect timeout,
    its own setting, shortened here)."""
    require_dask()
    import socket

    import dask

    with socket.socket() as probe:  # a free port, closed again: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    runs = tmp_path / "runs"
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        result = sweep(
            write(tmp_path),
            *GRID,
            "--backend",
            "dask",
            "--scheduler",
            f"tcp://127.0.0.1:{port}",
            "--runs-dir",
            runs,
        )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"--scheduler tcp://127.0.0.1:{port}: cannot reach it" in lines[0]
    assert not runs.exists()


def test_a_sub_run_renders_nothing_for_its_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep's sub-runs print to a console nobody reads: the network table and the progress
    lines are not even rendered (they cost more than the rest of a tiny run's folder)."""

    from scratchnn_cli import sweep

    rendered: list[object] = []
    monkeypatch.setattr(Console, "render", lambda self, *a, **k: rendered.append(a) or iter(()))
    spec = yaml.safe_load(TINY_SWEEP)
    spec["train"]["max_iterations"] = 300
    result = sweep.run_task(sweep.Task(0, 0, validate_config(spec, "quiet")), str(tmp_path))
    assert result.status == "completed", result
    assert rendered == []
    run_dir = Path(result.run_dir or "")
    assert (run_dir / "metrics.json").is_file() and (run_dir / "history.csv").is_file()


# --------------------------------------------------------------------------- --seeds


SEEDS_GRID = ["--grid", "train.lr=0.3,0.03", "--cv", "3"]

SEEDS = [4, 7]


def seeds_spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SWEEP.replace("max_iterations: 1000", "max_iterations: 500"))
    return path


def seeded_run(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    result = invoke(
        "sweep", seeds_spec(tmp_path), *SEEDS_GRID, "--seeds", "4,7", "--runs-dir", runs
    )
    assert result.exit_code == 0, result.output
    (sweep_dir,) = [p for p in runs.iterdir() if p.name.startswith("sweep-")]
    return sweep_dir


@pytest.fixture(scope="module")
def seeded_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seeded_run(tmp_path_factory.mktemp("seeds"))


@pytest.mark.slow
def test_every_point_and_fold_is_trained_with_each_seed_on_the_same_folds(
    seeded_sweep: Path,
) -> None:
    subs = {p.name.split("-tiny-")[1]: p for p in seeded_sweep.iterdir() if "-p0" in p.name}
    expected = {f"p{p:03d}-s{s}-f{f}" for p in range(2) for s in SEEDS for f in range(3)}
    assert set(subs) == expected
    for name, folder in subs.items():
        config = yaml.safe_load((folder / "config.yaml").read_text())
        seed, fold = int(name.split("-s")[1].split("-")[0]), int(name[-1])
        assert config["seed"] == seed and config["data"]["seed"] == 0
        assert config["data"]["cv"] == {"folds": 3, "fold": fold}
    prints = {n: read_json(f / "run.json")["data"]["fingerprint"] for n, f in subs.items()}
    for p in ("p000", "p001"):
        for f in range(3):  # the same rows for both seeds, other rows in another fold
            assert prints[f"{p}-s4-f{f}"] == prints[f"{p}-s7-f{f}"] == prints[f"p000-s4-f{f}"]
        assert len({prints[f"{p}-s4-f{f}"] for f in range(3)}) == 3
    weights = [np.load(subs[f"p000-s{s}-f0"] / "model.npz")["W0"] for s in SEEDS]
    assert not np.array_equal(*weights)  # the seed did change the run


@pytest.mark.slow
def test_the_score_of_a_point_is_the_mean_over_its_seeds_and_folds(seeded_sweep: Path) -> None:
    table = pd.read_csv(seeded_sweep / "results.csv")
    for point in range(2):
        accuracies = [
            read_json(folder / "metrics.json")["val"]["accuracy"]
            for folder in seeded_sweep.iterdir()
            if f"-p{point:03d}-s" in folder.name
        ]
        assert len(accuracies) == 6
        row = table[table["point"] == point].iloc[0]
        assert row["mean_val_accuracy"] == pytest.approx(np.mean(accuracies), abs=1e-9)
        assert row["std_val_accuracy"] == pytest.approx(np.std(accuracies), abs=1e-9)
        assert len(str(row["fold_val_accuracy"]).split()) == 6
    summary = (seeded_sweep / "summary.md").read_text()
    assert "seeds 4, 7" in summary
    assert read_plan(seeded_sweep).seeds == SEEDS  # --resume reads them back


@pytest.mark.slow
def test_every_sub_run_trains_with_the_engine_its_spec_gets(seeded_sweep: Path) -> None:
    engines = {read_json(p / "run.json").get("engine") for p in seeded_sweep.glob("*-p0*")}
    assert engines == {"compiled"}  # auto, for TINY_SWEEP's small dense network


def test_data_seed_fixes_the_split_while_the_run_seed_changes(tmp_path: Path) -> None:
    def rows(seed: int, data_seed: int | None) -> np.ndarray:
        overrides = [f"seed={seed}"] + ([] if data_seed is None else [f"data.seed={data_seed}"])
        config = load_config(seeds_spec(tmp_path), overrides)
        return load_dataset(config.data, config.seed).X_val

    np.testing.assert_array_equal(rows(3, 0), rows(0, None))
    np.testing.assert_array_equal(rows(3, 0), rows(9, 0))
    assert not np.array_equal(rows(3, None), rows(0, None))
    plain = validate_config(yaml.safe_load(TINY_SWEEP), "tiny").to_dict()
    assert "seed" not in plain["data"]  # a run without data.seed writes the config.yaml it did


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "0,0"], "distinct"),
        (["--seeds", "1,x"], "whole numbers"),
        (["--seeds", "-1"], "whole numbers"),
        (["--grid", "seed=0,1"], "--seeds"),
        (["--grid", "data.seed=0,1"], "cannot be swept"),
    ],
)
def test_bad_seeds_are_one_line_and_nothing_is_written(
    tmp_path: Path, args: list[str], message: str
) -> None:
    runs = tmp_path / "runs"
    grid = [] if args[0] == "--grid" else ["--grid", "train.lr=0.3"]
    result = invoke("sweep", seeds_spec(tmp_path), *grid, *args, "--runs-dir", runs)
    line = assert_one_line_error(result, 2)
    assert message in line
    assert not runs.exists() or not any(runs.iterdir())


def test_a_sweep_folder_written_without_seeds_still_reads(tmp_path: Path) -> None:
    plan = plan_sweep(seeds_spec(tmp_path), [], ["train.lr=0.3"], None, 3)
    stored = {k: v for k, v in vars(plan).items() if k != "seeds"}  # an older sweep.yaml
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(stored))
    old = read_plan(tmp_path)
    assert old.seeds is None and old.runs_per_point == 3
    assert sub_run_name(old, 0, 2) == "tiny-p000-f2"
    assert "seed" not in sub_run_spec(old, 0, 2)["data"]


# --------------------------------------------------------------------------- limits


# two tiny points of 100 single-sample updates each: a sweep of them takes a second
SHORT = ["--set", "train.max_iterations=100", "--no-refit"]

# a YAML document that expands to 10^9 values from a few hundred bytes ("billion laughs")
ALIAS_BOMB = "\n".join(
    [f"a0: &a0 [{', '.join(['x'] * 10)}]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    + [""]
)


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


@pytest.mark.slow
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


@pytest.mark.slow
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


# --------------------------------------------------------------------------- the summary


def sweep_outcome(cv: int | None, seeds: list[int] | None = None) -> tuple[Any, Any]:
    from scratchnn_cli.sweep.plan import SweepPlan
    from scratchnn_cli.sweep.result import PointRow, SweepResult

    plan = SweepPlan("s", 0, {}, {"train.lr": [0.1, 0.2]}, None, cv, [{"train.lr": 0.1},
                     {"train.lr": 0.2}], seeds)  # fmt: skip
    rows = [
        PointRow(
            point=p,
            params={"train.lr": lr},
            mean_val_accuracy=acc,
            std_val_accuracy=0.0125,
            fold_val_accuracy="",
            epochs=3.0,
            seconds=12.345,
            status="completed",
            note="",
        )  # fmt: skip
        for p, lr, acc in ((0, 0.1, 0.94), (1, 0.2, 0.97))
    ]
    return plan, SweepResult(Path("sweep-s"), plan, rows, rows[1])


def test_a_sweep_summary_without_cv_shows_no_spread() -> None:
    from scratchnn_cli.sweep.files import results_markdown

    text = results_markdown(*sweep_outcome(cv=None))
    assert "±" not in text and "CV estimate" not in text and "| std |" not in text
    assert "train.lr=0.2: validation accuracy 0.9700 (best.yaml)" in text
    assert "| train seconds | status |" in text and "| 12.35 | completed |" in text


def test_a_sweep_summary_with_cv_shows_the_spread_and_what_its_seconds_are() -> None:
    from scratchnn_cli.sweep.files import results_markdown

    text = results_markdown(*sweep_outcome(cv=3, seeds=[1, 2]))
    assert "CV estimate 0.9700 ± 0.0125 (best.yaml)" in text
    assert "standard deviation over 3 folds x 2 seeds" in text
    assert "| train seconds (sum over 6 sub-runs) | status |" in text


def test_the_sweep_command_without_cv_prints_no_spread(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SWEEP.replace("max_iterations: 1000", "max_iterations: 300"))
    result = invoke(
        "sweep", spec, "--grid", "train.lr=0.1,0.3", "--no-refit", "--runs-dir", tmp_path
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"^best: point \d train\.lr=0\.\d: validation accuracy 0\.\d{4}$",
                     result.stdout, re.M), result.stdout  # fmt: skip
    assert "±" not in result.stdout and "CV estimate" not in result.stdout
