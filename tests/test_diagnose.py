"""scratchnn diagnose: each finding fires on a run built to show it, and healthy runs get
"nothing wrong found"; diagnostics never change the training's numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import SMALL_CONFIG, invoke, require_shared_fashion

from scratchnn_cli.runs import read_json

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def train(tmp_path: Path, config: Path, *sets: str) -> tuple[str, Path]:
    """Train ``config`` with ``--set``s; (its stdout, its run folder)."""
    runs = tmp_path / "runs"
    before = set(runs.iterdir()) if runs.is_dir() else set()
    result = invoke("train", config, "--runs-dir", runs, *(f"--set={s}" for s in sets))
    assert result.exit_code in (0, 3), result.output  # 3: diverged, still a run to read
    (run_dir,) = set(runs.iterdir()) - before
    return result.stdout, run_dir


def blobs(tmp_path: Path) -> Path:
    config = tmp_path / "blobs.yaml"
    config.write_text(SMALL_CONFIG.format(name="blobs", max_iterations=20_000), encoding="utf-8")
    return config


def first_finding(run_dir: Path) -> str:
    result = invoke("diagnose", run_dir)
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()[0]


@pytest.mark.parametrize(
    ("sets", "finding", "to_try"),
    [
        (["train.lr=1e-7"], "learning rate too low", "--set train.lr=1e-06"),
        (["model.sigma=10"], "initial cost far from ln K", "--set model.sigma=1"),
        (["train.lr=1e4"], "learning rate too high", "--set train.lr=1000"),
        (["train.lr=1e200"], "learning rate too high", "--set train.lr=1e+199"),
        (
            ["model.mu=0.5", "model.sigma=1e-9"],
            "identical hidden units (symmetric plateau)",
            "--set model.sigma=0.1",
        ),
    ],
    ids=["lr-too-low", "sigma-10", "lr-too-high", "diverged", "identical-units"],
)
def test_each_finding_fires_on_a_run_built_to_show_it(
    tmp_path: Path, sets: list[str], finding: str, to_try: str
) -> None:
    stdout, run_dir = train(tmp_path, blobs(tmp_path), *sets)
    line = first_finding(run_dir)
    assert line.startswith(f"{finding}: "), line
    assert f"try {to_try}" in line, line
    # train says the same in one line, before the run folder (its last line)
    assert f"diagnose: {line} (scratchnn diagnose {run_dir})" in stdout.splitlines()[-2]


def test_vanishing_gradients_are_found_in_a_deep_sigmoid_net(tmp_path: Path) -> None:
    """Four sigmoid layers of 10 with sigma 0.1: each passes back a fraction of the gradient
    (the sigmoid's slope is at most 1/4), so the first layer's is ~1e-4 of the last's."""
    _, run_dir = train(tmp_path, blobs(tmp_path), "model.struct=[10,10,10,10]", "model.sigma=0.1")
    line = first_finding(run_dir)
    assert line.startswith("vanishing gradients: first layer's gradient "), line
    assert "(epoch 0)" in line and "--set model.activation=relu --set model.init=he" in line


@pytest.mark.slow
def test_the_assignments_deep_sigmoid_net_saturates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The assignment's [10, 5, 10] sigmoid net on the 10 Fashion-MNIST classes."""
    require_shared_fashion(monkeypatch)
    _, run_dir = train(tmp_path, CONFIGS / "fashion10_softmax.yaml", "model.struct=[10,5,10]")
    line = first_finding(run_dir)
    assert line.startswith("saturated units: "), line
    assert "of layer 1 (sigmoid) saturated" in line and "--set model.sigma=0.01" in line


def test_dead_relus_are_found(tmp_path: Path) -> None:
    config = CONFIGS / "circles_modern.yaml"
    _, run_dir = train(
        tmp_path,
        config,
        "model.activation=relu",
        "model.init=he",
        "train.optimizer.name=sgd",
        "train.lr=5",
        "train.max_epochs=20",
    )
    findings = invoke("diagnose", run_dir).stdout
    assert "dead ReLUs: " in findings, findings


def test_the_assignments_circles_net_sits_on_a_plateau(tmp_path: Path) -> None:
    _, run_dir = train(tmp_path, CONFIGS / "circles_shallow.yaml")
    line = first_finding(run_dir)
    assert line.startswith("plateau: the cost stayed at 0.69"), line
    assert "--set model.sigma=1 or --set train.lr=0.01" in line


@pytest.mark.slow
def test_overfitting_is_found_from_the_epoch_it_starts(tmp_path: Path) -> None:
    """A hidden layer of 128 on 89 training digits for 300 epochs: the validation cost turns."""
    _, run_dir = train(
        tmp_path,
        CONFIGS / "digits_softmax.yaml",
        "data.split=[0.05,0.45,0.5]",
        "model.struct=[128]",
        "train.max_epochs=300",
        "train.eps=0",
        "train.optimizer.name=adam",
        "train.lr=0.01",
        "train.batch_size=16",
    )
    line = first_finding(run_dir)
    assert line.startswith("overfitting: validation cost up from 0.36"), line
    assert "(epoch 60)" in line and "--set train.early_stopping.patience=5" in line


@pytest.mark.parametrize(
    ("config", "sets"),
    [
        ("circles_modern.yaml", []),
        ("digits_cnn.yaml", ["train.max_epochs=4"]),
    ],
)
def test_healthy_runs_have_nothing_wrong(tmp_path: Path, config: str, sets: list[str]) -> None:
    stdout, run_dir = train(tmp_path, CONFIGS / config, *sets)
    assert first_finding(run_dir) == "nothing wrong found: no rule fired: the run looks healthy"
    assert "diagnose:" not in stdout


def test_diagnostics_never_change_the_training_numbers(tmp_path: Path) -> None:
    weights = []
    for on in ("true", "false"):
        _, run_dir = train(tmp_path, blobs(tmp_path), f"train.diagnostics={on}")
        with np.load(run_dir / "model.npz") as data:
            weights.append({k: data[k] for k in data.files})
        assert (run_dir / "diagnostics.csv").is_file() is (on == "true")
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        np.testing.assert_array_equal(weights[0][key], weights[1][key])


def test_a_run_without_diagnostics_gets_what_its_history_allows(tmp_path: Path) -> None:
    _, run_dir = train(tmp_path, blobs(tmp_path), "train.lr=1e-7", "train.diagnostics=false")
    result = invoke("diagnose", run_dir)
    assert result.exit_code == 0, result.output
    assert "note: no diagnostics.csv (train.diagnostics: false)" in result.stderr
    assert result.stdout.startswith("learning rate too low: the cost moved ")
    assert read_json(run_dir / "run.json")["status"] == "completed"


@pytest.mark.parametrize(
    ("text", "note"),
    [
        ("epoch,layer\nnot a number,0\n", "note: diagnostics.csv could not be read ("),
        ("HEADER", "note: diagnostics.csv holds no probe: judged from history.csv alone"),
    ],
)
def test_a_broken_diagnostics_csv_loses_the_probes_not_the_history(
    tmp_path: Path, text: str, note: str
) -> None:
    _, run_dir = train(tmp_path, blobs(tmp_path), "train.lr=1e-7")
    path = run_dir / "diagnostics.csv"
    header = path.read_text(encoding="utf-8").splitlines()[0] + "\n"
    path.write_text(header if text == "HEADER" else text, encoding="utf-8")
    result = invoke("diagnose", run_dir)
    assert result.exit_code == 0, result.output
    assert note in result.stderr, result.stderr
    assert result.stdout.startswith("learning rate too low: the cost moved ")


def test_a_legacy_run_is_diagnosed(tmp_path: Path) -> None:
    import shutil

    legacy = Path(__file__).parent / "fixtures" / "legacy_runs" / "legacy_small"
    run_dir = Path(shutil.copytree(legacy, tmp_path / "legacy_small"))
    result = invoke("diagnose", run_dir)
    assert result.exit_code == 0, result.output
    assert "note: no diagnostics.csv (a run from before diagnostics" in result.stderr
    assert result.stdout.strip()
