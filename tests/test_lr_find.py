"""``scratchnn lr-find`` and ``lr_find.py``: the learning-rate range test.

A tiny network whose large rates diverge (the test stops early, the suggestion below the
blow-up); the suggestion for circles_modern and the Fashion-MNIST MLP within 10x of the rate
those configs train with; the same numbers twice; the command's folder and its bad input.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import assert_one_line_error, invoke, require_shared_fashion

from scratchnn_cli.assembly import network_for_dataset, training_set
from scratchnn_cli.config import ExperimentConfig, load_config, validate_config
from scratchnn_cli.data import load_dataset
from scratchnn_cli.errors import UserInputError
from scratchnn_cli.lr_find import (
    MAX_UPDATES,
    MIN_UPDATES,
    SMOOTHING_DECADES,
    default_updates,
    lr_range_test,
    memory,
    rate_schedule,
    smoothing_beta,
    suggest,
    whole_batches,
)
from scratchnn_cli.streams import Stream, stream

ROOT = Path(__file__).resolve().parents[1]

# blobs400 and a hidden layer of 3, plain SGD on batches of 8: rates past ~1 diverge
TINY = """\
name: tiny
seed: 0
data: {dataset: blobs400, split: [0.5, 0.25, 0.25]}
model: {struct: [3], sigma: 0.5}
train: {lr: 0.05, batch_size: 8, sampling: shuffle}
"""


def tiny(dropout: float = 0.0, **train: object) -> ExperimentConfig:
    """TINY with these ``train`` keys (and dropout)."""
    raw = yaml.safe_load(TINY)
    raw["train"].update(train)
    raw["model"]["dropout"] = dropout
    return validate_config(raw, "tiny")


# --------------------------------------------------------------------------- the pieces


def test_rates_grow_exponentially_from_start_to_end() -> None:
    lrs = rate_schedule(1e-7, 10.0, 81)
    assert lrs[0] == pytest.approx(1e-7) and lrs[-1] == pytest.approx(10.0)
    assert np.allclose(lrs[1:] / lrs[:-1], 10 ** (8 / 80))  # equal steps on a log scale


def test_the_smoothing_remembers_a_fixed_share_of_the_rate_axis() -> None:
    for updates in (100, 300, 2000):
        per_decade = (updates - 1) / 8
        beta = smoothing_beta(1e-7, 10.0, updates)
        assert 1 / (1 - beta) == pytest.approx(SMOOTHING_DECADES * per_decade)
    assert smoothing_beta(1e-7, 10.0, 5) == 0.0  # less than one update: no smoothing
    assert memory(0.0) == 1 and memory(0.98) == 50


def test_default_updates_see_a_fixed_number_of_samples_within_bounds() -> None:
    assert default_updates(1) == MAX_UPDATES
    assert default_updates(10**6) == MIN_UPDATES
    assert MIN_UPDATES < default_updates(128) < default_updates(16) < MAX_UPDATES


def test_whole_batches_leave_out_the_smaller_last_one() -> None:
    batches = whole_batches(np.arange(10), 4)
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(whole_batches(np.arange(8), 8)) == 1


def test_suggest_finds_the_steepest_descent_of_a_known_curve() -> None:
    """A cost falling from 2 to 0.5 as a logistic curve in log10(lr), steepest at 1e-3, then
    rising: the suggestion is the start of the steepest span, a span below 1e-3."""
    lrs = rate_schedule(1e-7, 1.0, 701)
    x = np.log10(lrs)
    cost = 0.5 + 1.5 / (1 + np.exp(4 * (x + 3))) + np.where(x > -1, (x + 1) ** 2, 0.0)
    span = 10  # a tenth of a decade
    lr, why = suggest(lrs, cost, span)
    assert lr is not None
    assert 10**-3.2 <= lr <= 1e-3, lr
    assert "steepest descent" in why and "per decade" in why


def test_suggest_none_when_the_cost_never_fell() -> None:
    lrs = rate_schedule(1e-7, 10.0, 200)
    lr, why = suggest(lrs, np.linspace(1.0, 2.0, 200), 5)
    assert lr is None and "never fell" in why
    assert suggest(lrs[:3], np.ones(3), 5)[0] is None  # too few updates to measure a fall


@pytest.mark.parametrize(
    ("start", "end", "updates", "message"),
    [
        (0.0, 1.0, None, "--start must be a number > 0"),
        (-1.0, 1.0, None, "--start must be a number > 0"),
        (math.nan, 1.0, None, "--start must be a number > 0"),
        (1e-3, math.inf, None, "--end must be a number > 0"),
        (1.0, 0.1, None, r"--start \(1\) must be below --end \(0.1\)"),
        (1.0, 1.0, None, "must be below"),
        (1e-7, 10.0, 1, "--updates must be at least 2"),
    ],
)
def test_a_bad_range_is_refused(
    start: float, end: float, updates: int | None, message: str
) -> None:
    with pytest.raises(UserInputError, match=message):
        lr_range_test(tiny(), start, end, updates)


# --------------------------------------------------------------------------- a small known case


@pytest.mark.parametrize("engine", ["numpy", "compiled"])
def test_tiny_network_diverges_at_large_rates_and_the_suggestion_is_below(engine: str) -> None:
    result = lr_range_test(tiny(engine=engine), 1e-5, 1e3)
    assert result.engine == engine
    assert result.stopped_early, result.stop_reason
    assert "passed 4x its best" in result.stop_reason or "became" in result.stop_reason
    assert len(result.lrs) < result.total_updates == default_updates(8)
    assert result.suggested is not None, result.why
    lowest = result.lrs[int(np.argmin(result.smoothed))]
    assert result.suggested < lowest < result.lrs[-1]  # below the lowest cost, below the blow-up
    smoothed = result.smoothed[np.isfinite(result.smoothed)]
    assert smoothed.min() < 0.5 * smoothed[0]  # it learned on the way


def test_every_batch_size_and_update_rule_runs() -> None:
    for train in ({"batch_size": 1}, {"batch_size": "full"}, {"optimizer": "adam"}):
        result = lr_range_test(tiny(**train), 1e-4, 10.0, 60)
        assert len(result.lrs) == len(result.costs) == len(result.smoothed) > 1
        assert np.isfinite(result.costs[0])


def test_the_first_cost_is_the_initial_network_on_training_s_first_batch() -> None:
    """The same initial weights and sample order as ``scratchnn train``: the cost of the first
    update is the initial network's on the first batch of the sampling stream."""
    config = load_config(ROOT / "configs" / "circles_modern.yaml", ["train.engine=numpy"])
    dataset = load_dataset(config.data, config.seed, config.model.dtype)
    X, y = training_set(config, dataset)
    net = network_for_dataset(config, dataset)
    first = stream(config.seed, Stream.SAMPLING).permutation(len(y))[:16]
    Y = net.loss.targets(y[first], dataset.n_classes, net.dtype)
    expected = net.loss.cost(net.forward(X[first], True), Y)
    result = lr_range_test(config, updates=20)
    assert result.costs[0] == pytest.approx(expected, rel=1e-12)


def test_same_config_seed_and_engine_give_the_same_numbers() -> None:
    """Twice the same numbers, dropout masks (their own stream) included; numpy's legacy global
    random state is never drawn from."""
    config = tiny(dropout=0.2, engine="numpy", sampling="random")
    global_state = np.random.get_state()  # noqa: NPY002 - to show that nothing draws from it
    first = lr_range_test(config, 1e-4, 100.0, 300)
    second = lr_range_test(config, 1e-4, 100.0, 300)
    after = np.random.get_state()  # noqa: NPY002
    assert global_state[0] == after[0] and np.array_equal(global_state[1], after[1])
    assert global_state[2:] == after[2:]
    for name in ("lrs", "costs", "smoothed"):
        assert np.array_equal(getattr(first, name), getattr(second, name)), name
    assert (first.suggested, first.why, first.stop_reason) == (
        second.suggested,
        second.why,
        second.stop_reason,
    )
    reseeded = lr_range_test(config.model_copy(update={"seed": 1}), 1e-4, 100.0, 300)
    assert not np.array_equal(reseeded.costs[:50], first.costs[:50])  # the seed does matter


# --------------------------------------------------------------------------- the proof


def test_circles_modern_suggestion_is_within_10x_of_its_rate() -> None:
    config = load_config(ROOT / "configs" / "circles_modern.yaml")
    result = lr_range_test(config)
    assert result.suggested is not None, result.why
    ratio = result.suggested / config.train.lr
    assert 0.1 <= ratio <= 10, f"suggested {result.suggested:g} for train.lr {config.train.lr:g}"


@pytest.mark.slow
def test_fashion_mlp_suggestion_is_within_10x_of_its_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    require_shared_fashion(monkeypatch)
    config = load_config(ROOT / "configs" / "fashion_mlp.yaml")
    result = lr_range_test(config)
    assert result.suggested is not None, result.why
    ratio = result.suggested / config.train.lr
    assert 0.1 <= ratio <= 10, f"suggested {result.suggested:g} for train.lr {config.train.lr:g}"


# --------------------------------------------------------------------------- the command


def write_tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def test_cli_writes_its_folder_and_prints_the_suggestion(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = invoke(
        "lr-find", write_tiny(tmp_path), "--runs-dir", runs, "--updates", "200", "--end", "1000",
        "--set", "train.engine=numpy",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    folder = Path(result.stdout.strip().splitlines()[-1])
    assert folder.parent == runs and folder.name.startswith("lr-find-tiny-")
    assert {p.name for p in folder.iterdir()} == {
        "config.yaml",
        "lr_find.csv",
        "lr_find.json",
        "lr_find.png",
    }
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("suggested lr: ")
    assert "steepest descent of the smoothed cost" in lines[0]
    assert "the spec's train.lr is 0.05" in lines[0]
    with open(folder / "lr_find.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    summary = json.loads((folder / "lr_find.json").read_text())
    assert len(rows) == summary["updates"] <= 200
    assert float(rows[0]["lr"]) == pytest.approx(1e-7)
    assert f"{summary['suggested_lr']:.2g}" in lines[0]
    assert summary["engine"] == "numpy" and summary["stopped_early"]
    assert (folder / "lr_find.png").read_bytes().startswith(b"\x89PNG")
    assert yaml.safe_load((folder / "config.yaml").read_text())["train"]["engine"] == "numpy"


def test_a_curve_that_cannot_be_drawn_is_a_note(tmp_path: Path, monkeypatch) -> None:
    import scratchnn_cli.report.plots as plots

    def broken(*args: object) -> bytes:
        raise RuntimeError("no font")

    monkeypatch.setattr(plots, "lr_find_png", broken)
    runs = tmp_path / "runs"
    args = ["--updates", "100", "--set", "train.engine=numpy"]
    result = invoke("lr-find", write_tiny(tmp_path), "--runs-dir", runs, *args)
    assert result.exit_code == 0, result.output
    assert "note: lr_find.png not drawn (RuntimeError: no font)" in result.stderr
    (folder,) = runs.iterdir()
    assert {p.name for p in folder.iterdir()} == {"config.yaml", "lr_find.csv", "lr_find.json"}


def table_cells(text: str) -> list[list[str]]:
    """The cells of each row of the Rich tables in ``text``."""
    return [[c.strip() for c in line.split("│")] for line in text.splitlines() if "│" in line]


def test_runs_lists_range_tests_with_their_suggestion(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    args = ["--updates", "100", "--end", "1000", "--set", "train.engine=numpy"]
    assert invoke("lr-find", write_tiny(tmp_path), "--runs-dir", runs, *args).exit_code == 0
    (folder,) = runs.iterdir()
    suggested = json.loads((folder / "lr_find.json").read_text())["suggested_lr"]
    broken = runs / "lr-find-broken"
    broken.mkdir()
    (broken / "lr_find.json").write_text("{not json")
    result = invoke("runs", runs)
    assert result.exit_code == 0, result.output
    assert "no runs directly in" in result.stdout
    assert "learning-rate range tests in" in result.stdout
    rows = {cells[1]: cells[2:4] for cells in table_cells(result.stdout) if len(cells) > 4}
    assert rows[f"{folder.name}/"] == [f"{suggested:.2g}", "0.05"]
    assert rows["lr-find-broken/"] == ["-", "-"]  # unreadable: no rates, still listed


@pytest.mark.parametrize(
    "args",
    [
        ["--start", "0"],
        ["--start", "-1e-3"],
        ["--start", "1", "--end", "0.1"],
        ["--end", "nan"],
        ["--updates", "1"],
        ["--set", "train.lr=-1"],
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str]) -> None:
    runs = tmp_path / "runs"
    result = invoke("lr-find", write_tiny(tmp_path), "--runs-dir", runs, *args)
    assert_one_line_error(result, 2)
    assert not runs.exists()  # nothing written


def test_cli_missing_config_is_one_line(tmp_path: Path) -> None:
    result = invoke("lr-find", tmp_path / "missing.yaml", "--runs-dir", tmp_path / "runs")
    assert_one_line_error(result, 2)
