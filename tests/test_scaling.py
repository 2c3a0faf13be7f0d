"""Tests for ``data.scale`` (none | standard | minmax): fitted on the training split only;
values too large to scale are refused.

Expected values are computed here with plain NumPy from the unscaled training rows, never with
the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import (
    LEGACY_RUNS,
    assert_nothing_ran,
    assert_one_line_error,
    invoke,
    train_here,
    write_config,
)
from sklearn.datasets import load_digits
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from scratchnn_cli.config import DataConfig, validate_config
from scratchnn_cli.data import Dataset, fit_scaling, load_dataset
from scratchnn_cli.errors import ConfigError, DataError

WHITE = 64  # index of the always-255 column added to the 64 digits pixels


@pytest.fixture
def pixel_csv(tmp_path: Path) -> Path:
    """Raw 0-255 pixels: 400 sklearn digits x 15 (0-240), plus a column that is always 255.

    Some digits pixels (e.g. the top-left corner) are 0 on every image: with the white column
    these are the constant columns that must not give NaN or inf.
    """
    digits = load_digits()
    pixels = digits.data[:400] * 15
    white = np.full((len(pixels), 1), 255.0)
    X = np.hstack([pixels, white]).astype(np.int64)
    labels = digits.target[:400]
    header = ",".join([f"p{i}" for i in range(64)] + ["white", "label"])
    rows = [",".join(map(str, [*row, label])) for row, label in zip(X, labels, strict=True)]
    path = tmp_path / "pixels.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def load(path: Path, scale: str, seed: int = 0, **kwargs: object) -> Dataset:
    return load_dataset(DataConfig(dataset=str(path), scale=scale, **kwargs), seed)


def constant_columns(X: np.ndarray) -> np.ndarray:
    return np.all(X == X[0], axis=0)


# --------------------------------------------------------------------------- the arrays


def test_none_is_the_unscaled_data(pixel_csv: Path) -> None:
    ds = load(pixel_csv, "none")
    assert ds.scaling.describe() == {"method": "none"}
    X = np.vstack([ds.X_train, ds.X_val, ds.X_test])
    assert X.min() == 0 and X.max() == 255
    np.testing.assert_array_equal(X[:, WHITE], 255.0)
    assert ds.fingerprint == load_dataset(DataConfig(dataset=str(pixel_csv)), 0).fingerprint


def test_standard_uses_the_training_mean_and_std(pixel_csv: Path) -> None:
    raw, ds = load(pixel_csv, "none", seed=3), load(pixel_csv, "standard", seed=3)
    for split in ("train", "val", "test"):  # scaling draws nothing: the split is the same
        np.testing.assert_array_equal(raw.split(split)[1], ds.split(split)[1])
    constant = constant_columns(raw.X_train)
    assert constant[WHITE] and constant[0] and constant.sum() < 20  # something to test
    mean = raw.X_train.sum(axis=0) / len(raw.X_train)
    std = np.sqrt(((raw.X_train - mean) ** 2).sum(axis=0) / len(raw.X_train))
    divisor = np.where(constant, 1.0, std)

    assert all(np.isfinite(X).all() for X in (ds.X_train, ds.X_val, ds.X_test))
    np.testing.assert_allclose(ds.X_train[:, ~constant].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(ds.X_train[:, ~constant].std(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(ds.X_train[:, constant], 0.0)
    for split in ("train", "val", "test"):
        expected = (raw.split(split)[0] - mean) / divisor
        np.testing.assert_allclose(ds.split(split)[0], expected, rtol=1e-12, atol=1e-12)
    # val was scaled with the training statistics, not its own
    val_std = raw.X_val.std(axis=0)
    own = (raw.X_val - raw.X_val.mean(axis=0)) / np.where(val_std > 0, val_std, 1.0)
    assert not np.allclose(ds.X_val, own, atol=1e-3)


def test_minmax_uses_the_training_min_and_range(pixel_csv: Path) -> None:
    raw, ds = load(pixel_csv, "none", seed=1), load(pixel_csv, "minmax", seed=1)
    constant = constant_columns(raw.X_train)
    assert constant.any() and not constant.all()
    low, high = raw.X_train.min(axis=0), raw.X_train.max(axis=0)
    divisor = np.where(constant, 1.0, high - low)

    assert all(np.isfinite(X).all() for X in (ds.X_train, ds.X_val, ds.X_test))
    np.testing.assert_array_equal(ds.X_train[:, ~constant].min(axis=0), 0.0)
    np.testing.assert_allclose(ds.X_train[:, ~constant].max(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(ds.X_train[:, constant], 0.0)
    for split in ("train", "val", "test"):
        expected = (raw.split(split)[0] - low) / divisor
        np.testing.assert_allclose(ds.split(split)[0], expected, rtol=1e-12, atol=1e-12)
    # a pixel that is never lit in train but lit in val/test lands outside [0, 1], finite
    assert ds.X_val.max() > 1 or ds.X_test.max() > 1


def test_scaling_is_fitted_on_train_size_rows_only(pixel_csv: Path) -> None:
    raw = load(pixel_csv, "none", seed=2, train_size=30)
    ds = load(pixel_csv, "standard", seed=2, train_size=30)
    np.testing.assert_array_equal(raw.y_val, ds.y_val)
    assert len(ds.y_train) == 30 and ds.scaling.describe()["n_samples"] == 30
    constant = constant_columns(raw.X_train)
    mean = raw.X_train.mean(axis=0)
    divisor = np.where(constant, 1.0, raw.X_train.std(axis=0))
    np.testing.assert_allclose(ds.X_test, (raw.X_test - mean) / divisor, rtol=1e-12, atol=1e-12)


def test_scaled_fingerprint_is_of_the_scaled_arrays_and_stable(pixel_csv: Path) -> None:
    fingerprints = {scale: load(pixel_csv, scale).fingerprint for scale in ("none", "standard")}
    fingerprints["minmax"] = load(pixel_csv, "minmax").fingerprint
    assert len(set(fingerprints.values())) == 3
    assert load(pixel_csv, "standard").fingerprint == fingerprints["standard"]  # deterministic
    assert load(pixel_csv, "standard", seed=1).fingerprint != fingerprints["standard"]


def test_the_record_describes_the_fit(pixel_csv: Path) -> None:
    raw = load(pixel_csv, "none")
    constant = np.flatnonzero(constant_columns(raw.X_train)).tolist()
    standard = load(pixel_csv, "standard").scaling.describe()
    assert standard["method"] == "standard"
    assert standard["estimator"] == "sklearn.preprocessing.StandardScaler"
    assert standard["fitted_on"] == "train"
    assert (standard["n_samples"], standard["n_features"]) == (len(raw.y_train), 65)
    assert standard["constant_features"] == constant
    mean = raw.X_train.mean(axis=0)
    assert standard["mean"]["max"] == pytest.approx(255.0)  # the white column
    assert standard["mean"]["mean"] == pytest.approx(float(np.mean(mean)))
    assert standard["std"]["min"] == 0.0
    assert standard["std"]["max"] == pytest.approx(float(raw.X_train.std(axis=0).max()))
    minmax = load(pixel_csv, "minmax").scaling.describe()
    assert minmax["estimator"] == "sklearn.preprocessing.MinMaxScaler"
    assert minmax["constant_features"] == constant
    assert minmax["min"] == {"min": 0.0, "mean": pytest.approx(255 / 65), "max": 255.0}
    ranges = raw.X_train.max(axis=0) - raw.X_train.min(axis=0)
    assert minmax["range"]["min"] == 0.0
    assert minmax["range"]["mean"] == pytest.approx(float(ranges.mean()))
    for record in (standard, minmax):  # plain JSON: run.json holds it as it is
        assert json.loads(json.dumps(record)) == record


# --------------------------------------------------------------------------- constant columns


def test_sklearn_divides_constant_columns_by_one() -> None:
    """What the constant-column guarantee rests on: zero std / range is replaced by 1."""
    X = np.array([[0.0, 1.0, 7.0], [0.0, 3.0, 7.0], [0.0, 2.0, 7.0]])
    standard = StandardScaler().fit(X)
    np.testing.assert_array_equal(standard.scale_[[0, 2]], 1.0)
    np.testing.assert_array_equal(standard.transform(X)[:, [0, 2]], 0.0)
    minmax = MinMaxScaler().fit(X)
    np.testing.assert_array_equal(minmax.data_range_[[0, 2]], 0.0)
    np.testing.assert_array_equal(minmax.transform(X)[:, [0, 2]], 0.0)


@pytest.mark.parametrize("method", ["standard", "minmax"])
def test_column_constant_in_train_only_stays_finite(method: str) -> None:
    train = np.array([[5.0, 0.0], [5.0, 1.0], [5.0, 2.0]])
    later = np.array([[9.0, 1.0], [5.0, 4.0]])
    scaling = fit_scaling(method, train)
    assert scaling.constant_features == (0,)
    np.testing.assert_array_equal(scaling.apply(train)[:, 0], 0.0)
    scaled = scaling.apply(later)
    assert np.isfinite(scaled).all()
    np.testing.assert_array_equal(scaled[:, 0], [4.0, 0.0])  # x - 5, divided by 1
    assert scaling.apply(np.empty((0, 2))).shape == (0, 2)  # an empty split stays empty
    np.testing.assert_allclose(scaling.inverse(scaled), later)


def test_unknown_scale_is_one_config_error_line() -> None:
    with pytest.raises(ConfigError, match=r"data\.scale: Input should be 'none', 'standard'"):
        validate_config({"data": {"dataset": "blobs400", "scale": "zscore"}}, "spec.yaml")
    with pytest.raises(ValueError, match="unknown scaling 'zscore'"):
        fit_scaling("zscore", np.zeros((2, 2)))


# --------------------------------------------------------------------------- runs


def test_old_run_folder_without_scale_loads_as_none() -> None:
    run_dir = LEGACY_RUNS / "gold_digits_f32"
    raw = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    assert "scale" not in raw["data"]
    config = validate_config(raw, f"{run_dir}/config.yaml")
    assert config.data.scale == "none"
    recorded = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["data"]
    for dtype in (np.float64, np.float32):
        dataset = load_dataset(config.data, config.seed, dtype=dtype)
        assert dataset.fingerprint == recorded["fingerprint"]


@pytest.mark.slow
@pytest.mark.parametrize("scale", ["standard", "minmax"])
def test_train_with_adam_on_raw_pixels_records_and_reapplies_the_scaling(
    pixel_csv: Path, tmp_path: Path, scale: str
) -> None:
    spec = {
        "name": f"pixels-{scale}",
        "seed": 0,
        "data": {"dataset": str(pixel_csv), "scale": scale},
        "model": {"struct": [16], "activation": "relu", "init": "he"},
        "train": {"lr": 0.01, "optimizer": "adam", "batch_size": 32, "max_epochs": 15},
    }
    config = tmp_path / "spec.yaml"
    config.write_text(yaml.safe_dump(spec), encoding="utf-8")
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert info["status"] == "completed"
    record = info["data"]["scale"]
    assert record["method"] == scale and record["n_samples"] == info["data"]["n_train"] == 200
    assert record["constant_features"] and WHITE in record["constant_features"]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["scale"] == scale
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["train"]["accuracy"] > 0.9 and metrics["test"]["accuracy"] > 0.7

    result = invoke("evaluate", run_dir)  # rebuilds the data from config.yaml: same scaling
    assert result.exit_code == 0, result.output
    evaluation = json.loads((run_dir / "evaluation-test.json").read_text(encoding="utf-8"))
    assert evaluation["held_out"] is True
    assert evaluation["data_fingerprint"] == info["data"]["fingerprint"]
    assert evaluation["accuracy"] == metrics["test"]["accuracy"]


# ------------------------------------------------------------------------ values too large to scale


def write_values(folder: Path, column: list[float]) -> Path:
    """A CSV: feature ``a`` holding ``column``, a plain feature ``b``, labels 0 / 1."""
    lines = ["a,b,label"] + [f"{v!r},{i * 0.5},{i % 2}" for i, v in enumerate(column)]
    path = folder / "big.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def huge_column(n: int = 40) -> list[float]:
    return [float(v) for v in np.random.default_rng(0).normal(size=n) * 1e300]


def test_features_too_large_to_standardise_are_refused_without_warnings(tmp_path: Path) -> None:
    csv = write_values(tmp_path, huge_column())
    config = write_config(tmp_path, f"data:\n  dataset: {csv}\n  scale: standard\n")
    line = assert_one_line_error(train_here(config))  # a RuntimeWarning would be an error here
    assert f"{csv}: data.scale: standard cannot scale column 'a'" in line, line
    assert "overflow float64" in line and "diverged" not in line, line
    assert_nothing_ran(tmp_path)


def test_features_whose_range_overflows_are_refused_for_minmax(tmp_path: Path) -> None:
    csv = write_values(tmp_path, [1.7e308 * (-1) ** i for i in range(40)])
    with pytest.raises(DataError, match="data.scale: minmax cannot scale column 'a'"):
        load_dataset(DataConfig(dataset=str(csv), scale="minmax"), 0)


def test_a_split_that_scaling_makes_infinite_is_refused(tmp_path: Path) -> None:
    column = [float(v) for v in np.random.default_rng(0).normal(size=40) * 1e-10]
    column[0] = 1e300  # one huge value, out of train with this seed; train's std is ~1e-10
    csv = write_values(tmp_path, column)
    with pytest.raises(DataError, match="makes column 'a' of the (val|test) split infinite"):
        load_dataset(DataConfig(dataset=str(csv), scale="standard"), 0)


def test_features_float32_cannot_hold_are_refused(tmp_path: Path) -> None:
    csv = write_values(tmp_path, huge_column())
    with pytest.raises(DataError, match="model.dtype float32 cannot hold column 'a'"):
        load_dataset(DataConfig(dataset=str(csv)), 0, np.float32)
