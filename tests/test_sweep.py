"""``scratchnn sweep``: grid and random points, cross-validation folds (disjoint, covering
train + val, stratified; the test split never seen), --jobs 2 equal to --jobs 1, a diverging
point reported while the sweep goes on, --resume after an interruption, the refit scored once on
test, and a Dask LocalCluster equal to the local run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import TINY_SWEEP, invoke, loopback_cluster, require_dask

from scratchnn_cli import experiment
from scratchnn_cli.config import build_config, load_config
from scratchnn_cli.data import load_dataset
from scratchnn_cli.data.splits import kfold_indices
from scratchnn_cli.sweep import expand_points, parse_grid_option, plan_sweep, point_spec

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


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


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
    config = build_config(point_spec(plan, {"train.lr": 0.01, "model.struct": [10, 5]}), "p")
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
    return build_config(yaml.safe_load(text), "test")


def rows(X: np.ndarray) -> set[tuple[float, ...]]:
    return {tuple(r) for r in X}


def test_a_fold_beyond_the_folds_and_cv_with_train_on_train_val_are_refused() -> None:
    raw = yaml.safe_load(TINY)
    raw["data"]["cv"] = {"folds": 5, "fold": 5}
    with pytest.raises(Exception, match="fold 5"):
        build_config(raw, "t")
    raw["data"].update(cv={"folds": 5, "fold": 1}, train_on="train+val")
    with pytest.raises(Exception, match="train_on: train"):
        build_config(raw, "t")


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
    from rich.console import Console

    from scratchnn_cli import sweep

    rendered: list[object] = []
    monkeypatch.setattr(Console, "render", lambda self, *a, **k: rendered.append(a) or iter(()))
    spec = yaml.safe_load(TINY_SWEEP)
    spec["train"]["max_iterations"] = 300
    result = sweep.run_task(sweep.Task(0, 0, build_config(spec, "quiet")), str(tmp_path))
    assert result.status == "completed", result
    assert rendered == []
    run_dir = Path(result.run_dir or "")
    assert (run_dir / "metrics.json").is_file() and (run_dir / "history.csv").is_file()
