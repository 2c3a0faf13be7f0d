"""``scratchnn sweep --seeds``: every point and fold trained with each seed, on the same folds
(``data.seed`` keeps the sweep's split); the point's score is the mean over all its sub-runs;
bad seeds and a ``seed`` grid key are refused; sweep folders without seeds still read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import TINY_SWEEP, assert_one_line_error, invoke

from scratchnn_cli.config import build_config, load_config
from scratchnn_cli.data import load_dataset
from scratchnn_cli.sweep import (
    plan_sweep,
    read_plan,
    sub_run_name,
    sub_run_spec,
)

GRID = ["--grid", "train.lr=0.3,0.03", "--cv", "3"]
SEEDS = [4, 7]


def spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SWEEP.replace("max_iterations: 1000", "max_iterations: 500"))
    return path


def run(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    result = invoke("sweep", spec(tmp_path), *GRID, "--seeds", "4,7", "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    (sweep_dir,) = [p for p in runs.iterdir() if p.name.startswith("sweep-")]
    return sweep_dir


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def seeded_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run(tmp_path_factory.mktemp("seeds"))


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


def test_every_sub_run_trains_with_the_engine_its_spec_gets(seeded_sweep: Path) -> None:
    engines = {read_json(p / "run.json").get("engine") for p in seeded_sweep.glob("*-p0*")}
    assert engines == {"compiled"}  # auto, for TINY_SWEEP's small dense network


def test_data_seed_fixes_the_split_while_the_run_seed_changes(tmp_path: Path) -> None:
    def rows(seed: int, data_seed: int | None) -> np.ndarray:
        overrides = [f"seed={seed}"] + ([] if data_seed is None else [f"data.seed={data_seed}"])
        config = load_config(spec(tmp_path), overrides)
        return load_dataset(config.data, config.seed).X_val

    np.testing.assert_array_equal(rows(3, 0), rows(0, None))
    np.testing.assert_array_equal(rows(3, 0), rows(9, 0))
    assert not np.array_equal(rows(3, None), rows(0, None))
    plain = build_config(yaml.safe_load(TINY_SWEEP), "tiny").to_dict()
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
    result = invoke("sweep", spec(tmp_path), *grid, *args, "--runs-dir", runs)
    line = assert_one_line_error(result, 2)
    assert message in line
    assert not runs.exists() or not any(runs.iterdir())


def test_a_sweep_folder_written_without_seeds_still_reads(tmp_path: Path) -> None:
    plan = plan_sweep(spec(tmp_path), [], ["train.lr=0.3"], None, 3)
    stored = {k: v for k, v in vars(plan).items() if k != "seeds"}  # an older sweep.yaml
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(stored))
    old = read_plan(tmp_path)
    assert old.seeds is None and old.runs_per_point == 3
    assert sub_run_name(old, 0, 2) == "tiny-p000-f2"
    assert "seed" not in sub_run_spec(old, 0, 2)["data"]
