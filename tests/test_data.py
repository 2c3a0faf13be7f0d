"""Tests for scratchnn_cli.data: built-ins, splitting, classes, dtype, CSV, IDX, Fashion-MNIST;
bad CSV data and columns named twice are refused before any run folder."""

from __future__ import annotations

import gzip
import hashlib
import re
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import sklearn.datasets
import yaml
from helpers import (
    SHARED_DATA,
    assert_folder_whole,
    assert_nothing_ran,
    assert_one_line_error,
    invoke,
    only_run,
    read_json,
    require_shared_fashion,
    train_here,
    write_config,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits, make_circles

from scratchnn_cli import data
from scratchnn_cli.config import DataConfig
from scratchnn_cli.data import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_FILES,
    cache_dir,
    data_dir,
    fashion_mnist,
    load_dataset,
    load_fashion_mnist,
    read_idx,
    split_indices,
    stratified_take,
)
from scratchnn_cli.errors import DataError


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the user's data dir or cache, and none can reach the network."""
    monkeypatch.delenv("SCRATCHNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("SCRATCHNN_FASHION_MNIST_URL", (tmp_path / "no-such-mirror").as_uri())


def load(dataset: str, seed: int = 0, **kwargs: object) -> data.Dataset:
    return load_dataset(DataConfig(dataset=dataset, **kwargs), seed)


def all_rows(ds: data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    return np.vstack([ds.X_train, ds.X_val, ds.X_test]), np.concatenate(
        [ds.y_train, ds.y_val, ds.y_test]
    )


def sorted_rows(X: np.ndarray) -> np.ndarray:
    return X[np.lexsort(X.T[::-1])]


# --------------------------------------------------------------------------- built-ins


@pytest.mark.parametrize(
    ("name", "rows", "features", "classes", "image_shape"),
    [
        ("blobs400", 400, ["X1", "X2", "X3"], ["0", "1"], None),
        ("circles500", 500, ["X0", "X1"], ["0", "1"], None),
        ("digits", 1797, 64, [str(d) for d in range(10)], (8, 8)),
    ],
)
def test_builtin_shapes_and_dtypes(name, rows, features, classes, image_shape) -> None:
    ds = load(name)
    n_features = features if isinstance(features, int) else len(features)
    assert ds.name == name
    assert ds.source.startswith("built-in: sklearn ")
    assert "\n" not in ds.source
    assert ds.class_names == classes
    assert ds.n_classes == len(classes)
    assert ds.n_features == n_features == len(ds.feature_names)
    if not isinstance(features, int):
        assert ds.feature_names == features
    assert ds.image_shape == image_shape
    X, y = all_rows(ds)
    assert X.shape == (rows, n_features)
    for X_part, y_part in (ds.split("train"), ds.split("val"), ds.split("test")):
        assert X_part.dtype == np.float64 and X_part.ndim == 2
        assert y_part.dtype == np.int64 and y_part.shape == (len(X_part),)
        assert not X_part.flags.writeable and not y_part.flags.writeable
    assert set(np.unique(y)) == set(range(len(classes)))


def test_builtin_class_balance() -> None:
    assert np.bincount(all_rows(load("blobs400"))[1]).tolist() == [200, 200]
    assert np.bincount(all_rows(load("circles500"))[1]).tolist() == [250, 250]


def test_circles_matches_generator_and_digits_are_scaled() -> None:
    X_ref, _ = make_circles(n_samples=500, noise=0.08, factor=0.5, random_state=500)
    np.testing.assert_array_equal(sorted_rows(all_rows(load("circles500"))[0]), sorted_rows(X_ref))
    X_digits = all_rows(load("digits"))[0]
    assert X_digits.min() == 0.0 and X_digits.max() == 1.0
    np.testing.assert_array_equal(sorted_rows(X_digits), sorted_rows(load_digits().data / 16))


def test_same_seed_same_data_different_seed_different_split() -> None:
    a, b, c = load("circles500", seed=3), load("circles500", seed=3), load("circles500", seed=4)
    assert a.fingerprint == b.fingerprint
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(a.split(name)[0], b.split(name)[0])
        np.testing.assert_array_equal(a.split(name)[1], b.split(name)[1])
    assert a.fingerprint != c.fingerprint
    assert not np.array_equal(a.X_train, c.X_train)
    # the generator itself does not depend on the seed: same rows, split differently
    np.testing.assert_array_equal(sorted_rows(all_rows(a)[0]), sorted_rows(all_rows(c)[0]))


def test_fingerprint_is_sha256_over_dtype_shape_and_bytes() -> None:
    ds = load("blobs400", split=(0.8, 0.2, 0.0))
    # headers written out by hand: little-endian float64 / int64, 320 train, 80 val, 0 test rows
    headers = ["<f8(320, 3);", "<i8(320,);", "<f8(80, 3);", "<i8(80,);", "<f8(0, 3);", "<i8(0,);"]
    arrays = (ds.X_train, ds.y_train, ds.X_val, ds.y_val, ds.X_test, ds.y_test)
    message = b"".join(h.encode() + a.tobytes() for h, a in zip(headers, arrays, strict=True))
    assert ds.fingerprint == "sha256:" + hashlib.sha256(message).hexdigest()
    assert len(message) == sum(len(h) for h in headers) + 400 * 3 * 8 + 400 * 8


@pytest.mark.parametrize("scale", ["none", "standard"])
def test_float32_data_is_the_float64_data_cast(scale: str) -> None:
    wide = load("digits", seed=1, scale=scale)
    narrow = load_dataset(DataConfig(dataset="digits", scale=scale), 1, dtype=np.float32)
    for name in ("train", "val", "test"):
        (X64, y64), (X32, y32) = wide.split(name), narrow.split(name)
        assert X32.dtype == np.float32 and y32.dtype == np.int64
        assert X32.nbytes * 2 == X64.nbytes and not X32.flags.writeable
        np.testing.assert_array_equal(X32, X64.astype(np.float32))
        np.testing.assert_array_equal(y32, y64)
    assert narrow.fingerprint == wide.fingerprint  # of the float64 data: dtype does not count
    if scale == "none":
        expected = (load_digits().data / 16).astype(np.float32)
        np.testing.assert_array_equal(sorted_rows(all_rows(narrow)[0]), sorted_rows(expected))


def test_dtype_must_be_a_float() -> None:
    with pytest.raises(ValueError, match="dtype must be float64 or float32, not int64"):
        load_dataset(DataConfig(dataset="blobs400"), 0, dtype=np.int64)


@pytest.mark.parametrize(
    ("split", "sizes"),
    [
        ((0.5, 0.25, 0.25), (250, 125, 125)),
        ((0.8, 0.2, 0.0), (400, 100, 0)),
        ((0.6, 0.0, 0.4), (300, 0, 200)),
        ((1.0, 0.0, 0.0), (500, 0, 0)),
        ((0.7, 0.15, 0.15), (350, 75, 75)),
    ],
)
def test_split_sizes_and_empty_splits(split, sizes) -> None:
    ds = load("circles500", split=split)
    assert (len(ds.X_train), len(ds.X_val), len(ds.X_test)) == sizes
    assert ds.X_val.shape[1] == ds.X_test.shape[1] == 2  # empty splits are (0, n)
    assert len(ds.y_val) == sizes[1] and len(ds.y_test) == sizes[2]


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    val=st.integers(0, 40).map(lambda p: p / 100),
    test=st.integers(0, 40).map(lambda p: p / 100),
)
def test_splits_partition_the_data(seed: int, val: float, test: float) -> None:
    ds = load("circles500", seed=seed, split=(1 - val - test, val, test))
    X, _ = all_rows(ds)
    assert len(X) == 500
    assert len(np.unique(X, axis=0)) == 500  # no row lands in two splits
    assert len(ds.X_val) == int(np.floor(val * 500 + 0.5))
    assert len(ds.X_test) == int(np.floor(test * 500 + 0.5))


def test_splits_are_stratified() -> None:
    ds = load("digits", split=(0.6, 0.2, 0.2))
    totals = np.bincount(all_rows(ds)[1])
    for name in ("train", "val", "test"):
        X_part, y_part = ds.split(name)
        expected = totals * len(y_part) / totals.sum()
        assert np.abs(np.bincount(y_part, minlength=10) - expected).max() <= 1
    circles = load("circles500")
    assert np.bincount(circles.y_test).tolist() in ([62, 63], [63, 62])
    assert np.bincount(circles.y_train).tolist() == [125, 125]


def test_split_indices_partition_and_stratify() -> None:
    y = np.repeat([0, 1, 2], [40, 40, 20])
    train, val, test = split_indices(y, (0.6, 0.2, 0.2), 7)
    assert (len(train), len(val), len(test)) == (60, 20, 20)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(100))
    assert np.bincount(y[val]).tolist() == [8, 8, 4] == np.bincount(y[test]).tolist()
    again = split_indices(y, (0.6, 0.2, 0.2), np.random.default_rng(7))  # int = default_rng(int)
    for a, b in zip((train, val, test), again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = split_indices(y, (0.6, 0.2, 0.2), 8)
    assert not np.array_equal(train, other[0])


def test_split_indices_with_an_official_test_set() -> None:
    y = np.arange(40) % 4
    train, val, test = split_indices(y, (0.5, 0.25, 0.25), 0, n_test_set=12)
    assert (len(train), len(val)) == (27, 13)  # val = 0.25 / 0.75 of the 40 rows
    np.testing.assert_array_equal(test, np.arange(12))
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(40))


def test_split_indices_refuses_empty_parts_and_bad_fractions() -> None:
    with pytest.raises(DataError, match=r"^tiny: 3 samples are too few .* val split would be"):
        split_indices(np.array([0, 1, 0]), (0.7, 0.1, 0.2), 0, name="tiny")
    with pytest.raises(ValueError, match="summing to 1"):
        split_indices(np.zeros(10, dtype=int), (0.5, 0.5, 0.5), 0)


def test_stratified_take() -> None:
    y = np.repeat([0, 1], [30, 10])
    indices = np.arange(5, 40)  # 25 of class 0, 10 of class 1
    rest, taken = stratified_take(indices, y, 7, np.random.default_rng(0))
    assert len(taken) == 7 and len(rest) == 28
    assert sorted(np.concatenate([rest, taken]).tolist()) == indices.tolist()
    assert np.bincount(y[taken]).tolist() == [5, 2]  # 25:10 of 7
    rest0, taken0 = stratified_take(indices, y, 0, 3)
    np.testing.assert_array_equal(rest0, indices)
    assert taken0.shape == (0,)
    with pytest.raises(ValueError, match="take 0 to 34 of 35 rows"):
        stratified_take(indices, y, 35, 0)


def test_split_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown split"):
        load("blobs400").split("validation")


def test_train_size_subsamples_the_train_split_only() -> None:
    full = load("circles500", seed=1)
    small = load("circles500", seed=1, train_size=40)
    assert small.X_train.shape == (40, 2)
    np.testing.assert_array_equal(small.X_val, full.X_val)
    np.testing.assert_array_equal(small.X_test, full.X_test)
    rows = {tuple(r) for r in full.X_train}
    assert all(tuple(r) in rows for r in small.X_train)
    assert small.fingerprint == load("circles500", seed=1, train_size=40).fingerprint
    assert small.fingerprint != load("circles500", seed=2, train_size=40).fingerprint


def test_train_size_larger_than_train_split() -> None:
    with pytest.raises(DataError, match=r"train_size=251 is larger than the 250 training"):
        load("circles500", train_size=251)


# --------------------------------------------------------------------------- classes


def test_classes_subset_relabelled_in_given_order() -> None:
    ds = load("digits", classes=["8", 3, "5"])
    assert ds.class_names == ["8", "3", "5"]
    counts = np.bincount(load_digits().target)
    assert np.bincount(all_rows(ds)[1]).tolist() == [counts[8], counts[3], counts[5]]
    # the rows labelled 0 are the images of an 8
    digits = load_digits()
    eights = digits.data[digits.target == 8] / 16
    X, y = all_rows(ds)
    np.testing.assert_array_equal(sorted_rows(X[y == 0]), sorted_rows(eights))


def test_unknown_class() -> None:
    with pytest.raises(DataError, match="unknown class 'zebra' in blobs400") as err:
        load("blobs400", classes=["0", "zebra"])
    message = str(err.value)
    assert "unknown class 'zebra'" in message and "available: 0, 1" in message
    assert "\n" not in message


BUILTIN_LOADERS = {  # what each built-in would call first to get its rows
    "blobs400": "make_blobs",
    "circles500": "make_circles",
    "digits": "load_digits",
}


@pytest.mark.parametrize(
    ("dataset", "available"),
    [
        ("fashion-mnist", ", ".join(FASHION_MNIST_CLASSES) + " (or label numbers 0-9)"),
        ("digits", "0, 1, 2, 3, 4, 5, 6, 7, 8, 9"),
        ("blobs400", "0, 1"),
        ("circles500", "0, 1"),
    ],
)
def test_unknown_builtin_class_is_refused_before_any_data_is_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, dataset: str, available: str
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("SCRATCHNN_DATA", str(empty))
    monkeypatch.setenv("XDG_CACHE_HOME", str(empty / "cache"))

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{dataset}: data was read or downloaded before checking classes")

    monkeypatch.setattr(fashion_mnist, "_download", must_not_run)
    monkeypatch.setattr(fashion_mnist, "read_idx", must_not_run)
    for name in BUILTIN_LOADERS.values():
        monkeypatch.setattr(sklearn.datasets, name, must_not_run)
    first = "Shirt" if dataset == "fashion-mnist" else "1"
    with pytest.raises(DataError, match=re.escape(f"unknown class 'Banana' in {dataset}")) as err:
        load(dataset, classes=[first, "Banana"])
    assert str(err.value).endswith(f"available: {available}")
    assert list(empty.iterdir()) == []  # nothing downloaded, no cache folder made


# --------------------------------------------------------------------------- CSV files


def write_csv(tmp_path: Path, text: str, name: str = "data.csv") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_csv_integer_labels(tmp_path: Path) -> None:
    rows = [f"{i},{i * 0.5},{7 if i % 2 else 2}" for i in range(20)]
    path = write_csv(tmp_path, "a,b,label\n" + "\n".join(rows) + "\n")
    ds = load(path)
    assert ds.name == path and path in ds.source
    assert ds.class_names == ["2", "7"]
    assert ds.feature_names == ["a", "b"]
    assert ds.image_shape is None
    X, y = all_rows(ds)
    assert X.dtype == np.float64 and X.shape == (20, 2)
    # odd a -> label 7 -> class index 1
    np.testing.assert_array_equal(y, (X[:, 0] % 2 == 1).astype(np.int64))


def test_csv_integer_labels_sort_numerically_and_float_integers(tmp_path: Path) -> None:
    labels = ["10", "9", "-1"] * 4
    rows = [f"{i},{lab}.0" for i, lab in enumerate(labels)]
    ds = load(write_csv(tmp_path, "x,y\n" + "\n".join(rows) + "\n"), split=(0.5, 0.0, 0.5))
    assert ds.class_names == ["-1", "9", "10"]
    ds = load(write_csv(tmp_path, "x,y\n" + "\n".join(rows) + "\n"), classes=[10, "-1"])
    assert ds.class_names == ["10", "-1"]
    assert ds.n_classes == 2 and len(all_rows(ds)[1]) == 8


def test_csv_string_labels_keep_names(tmp_path: Path) -> None:
    animals = ["dog", "cat", "ant"] * 5
    rows = [f"{i},{animal}" for i, animal in enumerate(animals)]
    ds = load(write_csv(tmp_path, "size,animal\n" + "\n".join(rows) + "\n"))
    assert ds.class_names == ["ant", "cat", "dog"]
    X, y = all_rows(ds)
    expected = [["ant", "cat", "dog"].index(animals[int(s)]) for s in X[:, 0]]
    assert y.tolist() == expected
    # label numbers 0..k-1 select text classes too: 2 is "dog" (sorted: ant, cat, dog)
    picked = load(write_csv(tmp_path, "size,animal\n" + "\n".join(rows) + "\n"), classes=[2, "ant"])
    assert picked.class_names == ["dog", "ant"]
    X, y = all_rows(picked)
    assert sorted(X[y == 0, 0].tolist()) == [0, 3, 6, 9, 12]  # the rows of the dogs
    assert sorted(X[y == 1, 0].tolist()) == [2, 5, 8, 11, 14]  # the rows of the ants


def test_csv_target_column(tmp_path: Path) -> None:
    rows = [f"{i % 2},{i},{i * 2}" for i in range(12)]
    path = write_csv(tmp_path, "kind,u,v\n" + "\n".join(rows) + "\n")
    ds = load(path, target="kind")
    assert ds.feature_names == ["u", "v"] and ds.class_names == ["0", "1"]
    with pytest.raises(DataError, match="target column 'Kind' not found") as err:
        load(path, target="Kind")
    assert "target column 'Kind' not found" in str(err.value)
    assert "kind, u, v" in str(err.value)


def test_csv_small_data_falls_back_to_unstratified(tmp_path: Path) -> None:
    rows = [f"{i},{i % 3}" for i in range(6)]  # 3 classes x 2 rows: too small to stratify
    ds = load(write_csv(tmp_path, "x,y\n" + "\n".join(rows) + "\n"), split=(0.34, 0.33, 0.33))
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (2, 2, 2)


BALANCED = "".join(f"{i},{i * 3},{i % 2}\n" for i in range(10))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ["the CSV file is empty"]),
        ("a,b,c\n", ["header but no data rows"]),
        ("a,b\n1,2\n1,2,3\n", ["cannot parse the CSV file", "line 3"]),
        ('a,b\n"unclosed,1\n', ["cannot parse the CSV file"]),
        ("only\n1\n2\n", ["at least two columns"]),
        (
            "a,b,y\n1,2,0\n,3,1\n4,,0\n5,,1\n6,7,0\n8,9,1\n",
            ["missing values in column", "'a' (1 row, first on line 3)", "'b' (2 rows"],
        ),
        ("a,b,y\n1,2,0\n2,3,\n3,4,1\n4,5,0\n", ["missing values", "'y' (1 row"]),
        (
            "a,colour,y\n"
            + "".join(f"{i},{c},{i % 2}\n" for i, c in enumerate(["1"] * 3 + ["red"])),
            ["non-numeric feature column 'colour'", "'red' on line 5", "data.target"],
        ),
        ("a,y\n" + "".join(f"{i},1\n" for i in range(6)), ["single class ('1')"]),
        ("a,y\n" + "".join(f"{i},{min(i, 1)}\n" for i in range(6)), ["class '0' has 1 sample"]),
        (
            "a,y\n1,0\n2,1\n3,0\n4,1\n",
            ["4 samples are too few", "val and test splits would be empty"],
        ),
        ("a,y\n" + "".join(f"{i},{i / 4}\n" for i in range(8)), ["non-integer", "0.25"]),
        ("a,y\n1,0\n2,1\n3,inf\n4,1\n5,0\n", ["non-integer values (e.g. inf)"]),
        ("a,b,y\n1,inf,0\n2,3,1\n3,4,0\n4,5,1\n", ["infinite values in column 'b'"]),
    ],
)
def test_csv_bad_files(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = write_csv(tmp_path, text)
    with pytest.raises(DataError, match=re.escape(expected[0])) as err:
        load(path, split=(0.8, 0.1, 0.1))
    message = str(err.value)
    assert "\n" not in message
    for part in expected:
        assert part in message


def test_csv_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes(b"\xff\xfe\x00\x01garbage\x00\x89")
    with pytest.raises(DataError, match="cannot parse the CSV file"):
        load(str(path))


def test_csv_unknown_class(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown class 5") as err:
        load(write_csv(tmp_path, "a,b,y\n" + BALANCED), classes=[0, 5])
    assert "unknown class 5" in str(err.value) and "available: 0, 1" in str(err.value)


@pytest.mark.parametrize(
    ("name", "shape", "features"),
    [("blobs400.csv", (400, 3), ["X1", "X2", "X3"]), ("circles500.csv", (500, 2), ["X0", "X1"])],
)
def test_course_csvs(name: str, shape: tuple[int, int], features: list[str]) -> None:
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"course CSV not available at {path}")
    ds = load(str(path))
    X, y = all_rows(ds)
    assert X.shape == shape
    assert ds.feature_names == features and ds.class_names == ["0", "1"]
    assert np.bincount(y).tolist() == [shape[0] // 2] * 2


# --------------------------------------------------------------------------- IDX files


def idx_bytes(array: np.ndarray, dtype_code: int = 0x08) -> bytes:
    header = bytes([0, 0, dtype_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("shape", [(7,), (3, 4, 5), (0, 28, 28)])
def test_read_idx_roundtrip(tmp_path: Path, compress: bool, shape: tuple[int, ...]) -> None:
    array = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    decoded = read_idx(write_idx(tmp_path / "x.idx", array, compress))
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, array)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"\x01\x00\x08\x01" + struct.pack(">I", 2) + b"ab", "bad magic number"),
        (b"PK\x03\x04junk", "bad magic number"),
        (b"\x00\x00", "bad magic number"),
        (b"\x00\x00\x0d\x01" + struct.pack(">I", 1) + b"abcd", "unsupported IDX data type 0x0d"),
        (b"\x00\x00\x08\x02" + struct.pack(">2I", 1, 1) + b"a", "2 dimensions"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 5), "truncated IDX header"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"abcd", "payload is 4 bytes"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 3) + b"abcd", "payload is 4 bytes"),
    ],
)
def test_read_idx_rejects_bad_files(tmp_path: Path, payload: bytes, expected: str) -> None:
    for compress in (False, True):
        path = tmp_path / f"bad-{compress}.idx"
        path.write_bytes(gzip.compress(payload) if compress else payload)
        with pytest.raises(DataError, match=re.escape(expected)) as err:
            read_idx(path)
        assert str(path) in str(err.value) and expected in str(err.value)


def test_read_idx_truncated_or_corrupt_gzip(tmp_path: Path) -> None:
    blob = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8).reshape(2, 10, 10)))
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="corrupt or truncated gzip") as err:
        read_idx(truncated)
    assert str(truncated) in str(err.value)
    corrupt = tmp_path / "corrupt.gz"
    corrupt.write_bytes(blob[:10] + bytes(b ^ 0xFF for b in blob[10:]))
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        read_idx(corrupt)
    with pytest.raises(DataError, match="cannot read the IDX file"):
        read_idx(tmp_path / "missing.gz")


# --------------------------------------------------------------------------- Fashion-MNIST


def write_fake_fashion(folder: Path, n_train: int = 40, n_test: int = 20, seed: int = 0) -> dict:
    """Four small valid IDX .gz files; returns their arrays and sha256 by file name."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": (np.arange(n_test) * 3 % 10).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(folder / name, array)
    sha = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in arrays}
    return {"arrays": arrays, "sha256": sha}


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A fake Fashion-MNIST served from a file:// URL, with the checksum table patched."""
    fake = write_fake_fashion(tmp_path / "mirror")
    monkeypatch.setenv("SCRATCHNN_FASHION_MNIST_URL", (tmp_path / "mirror").as_uri() + "/")
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_SHA256", fake["sha256"])
    return fake


def test_download_verify_and_load(mirror: dict, capsys: pytest.CaptureFixture[str]) -> None:
    target = cache_dir() / "fashion-mnist"
    assert not target.exists()
    X_train, y_train, X_test, y_test = load_fashion_mnist()
    arrays = mirror["arrays"]
    np.testing.assert_array_equal(X_train, arrays["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(y_train, arrays["train-labels-idx1-ubyte.gz"])
    np.testing.assert_array_equal(X_test, arrays["t10k-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(y_test, arrays["t10k-labels-idx1-ubyte.gz"])
    assert sorted(p.name for p in target.iterdir()) == sorted(FASHION_MNIST_FILES)
    for name in FASHION_MNIST_FILES:
        assert hashlib.sha256((target / name).read_bytes()).hexdigest() == mirror["sha256"][name]
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err  # the progress bar


def test_cached_files_are_used_without_network(
    mirror: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    load_fashion_mnist()
    monkeypatch.setenv("SCRATCHNN_FASHION_MNIST_URL", (tmp_path / "gone").as_uri())
    X_train, *_ = load_fashion_mnist(download=True)
    assert X_train.shape == (40, 28, 28)


def test_partial_cache_downloads_only_missing_files(mirror: dict) -> None:
    target = cache_dir() / "fashion-mnist"
    load_fashion_mnist()
    (target / "t10k-labels-idx1-ubyte.gz").unlink()
    before = (target / "train-images-idx3-ubyte.gz").stat().st_mtime_ns
    assert load_fashion_mnist()[3].shape == (20,)
    assert (target / "train-images-idx3-ubyte.gz").stat().st_mtime_ns == before


def test_checksum_mismatch(mirror: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = dict(mirror["sha256"], **{"train-labels-idx1-ubyte.gz": "0" * 64})
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_SHA256", wrong)
    with pytest.raises(DataError, match="checksum mismatch") as err:
        load_fashion_mnist()
    message = str(err.value)
    assert "\n" not in message
    assert "could not download" in message and "checksum mismatch" in message
    assert "train-labels-idx1-ubyte.gz" in message
    assert "$SCRATCHNN_DATA/fashion-mnist/" in message
    target = cache_dir() / "fashion-mnist"
    assert str(target) in message
    assert not (target / "train-labels-idx1-ubyte.gz").exists()
    assert [p.name for p in target.iterdir()] == ["train-images-idx3-ubyte.gz"]  # no temp files


def test_unreachable_url_says_where_to_put_the_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="could not download Fashion-MNIST") as err:
        load("fashion-mnist")
    message = str(err.value)
    assert "\n" not in message
    assert "could not download Fashion-MNIST file train-images-idx3-ubyte.gz" in message
    assert "put the four files " + ", ".join(FASHION_MNIST_FILES) in message
    assert "$SCRATCHNN_DATA/fashion-mnist/" in message
    assert str(tmp_path / "xdg-cache" / "scratchnn" / "fashion-mnist") in message
    assert not any((cache_dir() / "fashion-mnist").iterdir())


def test_not_found_without_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SCRATCHNN_DATA", str(tmp_path / "mydata"))
    with pytest.raises(DataError, match="Fashion-MNIST not found") as err:
        load_fashion_mnist(download=False)
    assert "Fashion-MNIST not found" in str(err.value)
    assert str(tmp_path / "mydata" / "fashion-mnist") in str(err.value)


def test_data_dir_is_searched_before_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mine = write_fake_fashion(tmp_path / "mydata" / "fashion-mnist", n_train=30, seed=1)
    write_fake_fashion(cache_dir() / "fashion-mnist", n_train=50, seed=2)
    assert load_fashion_mnist(download=False)[0].shape == (50, 28, 28)
    monkeypatch.setenv("SCRATCHNN_DATA", str(tmp_path / "mydata"))
    X_train, *_ = load_fashion_mnist(download=False)
    np.testing.assert_array_equal(X_train, mine["arrays"]["train-images-idx3-ubyte.gz"])
    assert str(tmp_path / "mydata" / "fashion-mnist") in load("fashion-mnist").source


def test_fashion_dataset_uses_official_test_set(mirror: dict) -> None:
    ds = load("fashion-mnist", split=(0.5, 0.25, 0.25))
    assert ds.image_shape == (28, 28) and ds.n_features == 784
    assert ds.class_names == FASHION_MNIST_CLASSES
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (27, 13, 20)  # val = 1/3 of 40
    test_images = mirror["arrays"]["t10k-images-idx3-ubyte.gz"]
    np.testing.assert_array_equal(ds.X_test * 255, test_images.reshape(20, -1))
    assert ds.X_train.dtype == np.float64 and 0 <= ds.X_train.min() and ds.X_train.max() <= 1
    # split[2] is ignored: the official test set is always the test split
    assert len(load("fashion-mnist", split=(0.75, 0.25, 0.0)).y_test) == 20


def test_fashion_classes_by_name_or_label_number(mirror: dict) -> None:
    ds = load("fashion-mnist", classes=[6, "Sandal"], split=(0.5, 0.5, 0.0))
    assert ds.class_names == ["Shirt", "Sandal"]
    labels = mirror["arrays"]["t10k-labels-idx1-ubyte.gz"]
    assert len(ds.y_test) == np.isin(labels, [5, 6]).sum()
    assert len(ds.y_train) + len(ds.y_val) == 8
    with pytest.raises(DataError, match="'Sandal' is listed twice"):
        load("fashion-mnist", classes=["Sandal", "5"])
    with pytest.raises(DataError, match="unknown class 'shirt' in fashion-mnist") as err:
        load("fashion-mnist", classes=["Shirt", "shirt"])
    assert "unknown class 'shirt'" in str(err.value) and "Ankle boot" in str(err.value)
    assert "label numbers 0-9" in str(err.value)


@pytest.mark.parametrize(
    ("name", "array", "expected"),
    [
        ("train-labels-idx1-ubyte.gz", np.zeros(39, np.uint8), "39 labels but"),
        ("t10k-labels-idx1-ubyte.gz", np.full(20, 10, np.uint8), "label 10 is out of range"),
        ("train-images-idx3-ubyte.gz", np.zeros((40, 8, 8), np.uint8), "expected 28x28"),
        ("t10k-images-idx3-ubyte.gz", np.zeros(20, np.uint8), "expected 28x28"),
    ],
)
def test_fashion_inconsistent_files(tmp_path: Path, name: str, array, expected: str) -> None:
    folder = cache_dir() / "fashion-mnist"
    write_fake_fashion(folder)
    write_idx(folder / name, array)
    with pytest.raises(DataError, match=expected):
        load_fashion_mnist(download=False)


def test_fashion_truncated_local_file_names_it() -> None:
    folder = cache_dir() / "fashion-mnist"
    write_fake_fashion(folder)
    path = folder / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="corrupt or truncated gzip") as err:
        load_fashion_mnist(download=False)
    assert str(path) in str(err.value)


def test_real_fashion_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    require_shared_fashion(monkeypatch)
    X_train, y_train, X_test, y_test = load_fashion_mnist(download=False)
    assert X_train.shape == (60000, 28, 28) and X_test.shape == (10000, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    ds = load("fashion-mnist", classes=["Shirt", "Sandal"], split=(0.8, 0.2, 0.0))
    assert ds.class_names == ["Shirt", "Sandal"]
    assert len(ds.y_train) + len(ds.y_val) == 12_000 and len(ds.y_test) == 2_000
    assert (len(ds.y_train), len(ds.y_val)) == (9_600, 2_400)
    assert np.bincount(ds.y_test).tolist() == [1000, 1000]


# --------------------------------------------------------------------------- locations


def test_data_dir_and_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert data_dir() is None
    monkeypatch.setenv("SCRATCHNN_DATA", str(tmp_path))
    assert data_dir() == tmp_path
    assert cache_dir() == tmp_path / "xdg-cache" / "scratchnn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "scratchnn"


# --------------------------------------------------------------------------- package layout


def test_data_package_imports_no_network_training_or_cli_code() -> None:
    code = (
        "import sys, scratchnn_cli.data\n"
        "print(' '.join(m for m in sys.modules if m.startswith('scratchnn_cli.')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "scratchnn_cli.data.dataset" in loaded
    allowed = (
        "scratchnn_cli.data",
        "scratchnn_cli.config",
        "scratchnn_cli.errors",
        "scratchnn_cli.streams",
    )
    assert [m for m in loaded if not m.startswith(allowed)] == []


# -------------------------------------------------------------------------- CSV columns named twice


def write_header_csv(folder: Path, header: str, rows: int = 20) -> Path:
    """A CSV with ``header`` and ``rows`` rows of small numbers, the last column 0 / 1."""
    width = len(header.split(","))
    lines = [header] + [
        ",".join([*(str(r * 0.1 + c) for c in range(width - 1)), str(r % 2)]) for r in range(rows)
    ]
    path = folder / "data.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_label_column_given_twice_is_refused(tmp_path: Path) -> None:
    csv = write_header_csv(tmp_path, "x1,Class,Class")
    config = write_config(
        tmp_path, f"data:\n  dataset: {csv}\n  target: Class\nmodel:\n  struct: [2]\n"
    )
    line = assert_one_line_error(train_here(config))
    assert f"{csv}: the header gives the same name to several columns: 'Class' (columns 2, 3)" in (
        line
    ), line
    assert_nothing_ran(tmp_path)


def test_repeated_feature_names_are_refused_each_named(tmp_path: Path) -> None:
    csv = write_header_csv(tmp_path, "a,b,a,b,a,label")
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(dataset=str(csv)), 0)
    assert "'a' (columns 1, 3, 5); 'b' (columns 2, 4)" in str(err.value)


def test_names_pandas_would_give_a_copy_are_fine_when_written(tmp_path: Path) -> None:
    csv = write_header_csv(tmp_path, "a,a.1,NA,label")  # distinct names, one of them "NA"
    assert load_dataset(DataConfig(dataset=str(csv)), 0).feature_names == ["a", "a.1", "NA"]


# --------------------------------------------------------------------------- bad CSV data


def csv_rows(n: int, label: Callable[[int], object], x1: Callable[[int], object] = str) -> str:
    lines = ["x1,x2,label"] + [f"{x1(i)},{(i * 7) % 5 / 5},{label(i)}" for i in range(n)]
    return "\n".join(lines) + "\n"


BAD_CSVS = {
    "missing value": (
        csv_rows(40, lambda i: i % 2, lambda i: "" if i == 7 else str(i)),
        "missing values",
    ),
    "non-numeric feature": (
        csv_rows(40, lambda i: i % 2, lambda i: "abc" if i == 3 else str(i)),
        "non-numeric",
    ),
    "single class": (csv_rows(40, lambda i: "cat"), "single class"),
    "too few rows": (csv_rows(4, lambda i: i % 2), "too few"),
    "class with one sample": (csv_rows(40, lambda i: 2 if i == 0 else i % 2), "needs at least 2"),
    "header only": ("x1,x2,label\n", "no data rows"),
    "empty file": ("", "empty"),
    "one column": ("label\n0\n1\n0\n1\n", "at least two columns"),
    "infinite feature": (
        csv_rows(40, lambda i: i % 2, lambda i: "inf" if i == 5 else str(i)),
        "infinite",
    ),
    "fractional labels": (csv_rows(40, lambda i: i % 2 + 0.5), "non-integer"),
    "ragged rows": ("x1,x2,label\n1,2,0\n1,2,3,4,5\n", "cannot parse"),
    "binary junk": ("\x00\xff\xfe garbage \x00\n\x01,\x02\n", None),
}


@pytest.mark.parametrize("case", list(BAD_CSVS))
def test_bad_csv_is_exit_2_before_any_run_folder(tmp_path: Path, case: str) -> None:
    text, expected = BAD_CSVS[case]
    data = tmp_path / "data.csv"
    data.write_bytes(text.encode("utf-8", "surrogateescape"))
    config = write_config(
        tmp_path, f"name: csv\ndata:\n  dataset: {data}\ntrain:\n  max_iterations: 100\n"
    )
    # 4 rows split (0.9, 0.05, 0.05) leave the val and test splits empty
    split = ["--set", "data.split=[0.9, 0.05, 0.05]"] if case == "too few rows" else []
    result = invoke("train", config, *split, "--runs-dir", tmp_path / "runs")
    line = assert_one_line_error(result)
    assert str(data) in line
    if expected is not None:
        assert expected in line, line
    assert not (tmp_path / "runs").exists()


def test_unknown_target_column_is_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text(csv_rows(40, lambda i: i % 2))
    config = write_config(tmp_path, f"name: csv\ndata:\n  dataset: {data}\n")
    result = invoke("train", config, "--set", "data.target=nope", "--runs-dir", tmp_path / "r")
    assert "target column 'nope' not found" in assert_one_line_error(result)
    assert not (tmp_path / "r").exists()


def test_string_labels_keep_their_class_names(tmp_path: Path) -> None:
    data = tmp_path / "pets.csv"
    data.write_text(csv_rows(40, lambda i: ["dog", "cat"][i % 2], lambda i: str(i % 2 + i / 100)))
    config = write_config(
        tmp_path,
        f"name: pets\ndata:\n  dataset: {data}\nmodel:\n  struct: [3]\n"
        "train:\n  lr: 1.0\n  eps: 0\n  max_iterations: 1000\n",
    )
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run_dir = only_run(tmp_path / "runs")
    info = assert_folder_whole(run_dir)
    assert info["status"] == "completed"
    assert info["data"]["classes"] == ["cat", "dog"]  # text labels in sorted order
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["dataset"] == str(data)
    metrics = read_json(run_dir / "metrics.json")
    # x1 >= 1 for every cat, < 0.4 for every dog: learned, every split is classified right,
    # which only holds if the text labels map to the same class index in every split
    for split, n in (("train", 20), ("val", 10), ("test", 10)):
        assert metrics[split]["confusion_matrix"] == [[n // 2, 0], [0, n // 2]], split
        assert metrics[split]["accuracy"] == 1.0, split
    evaluation = invoke("evaluate", run_dir)
    assert evaluation.exit_code == 0, evaluation.output
    assert "cat" in evaluation.stdout and "dog" in evaluation.stdout
    assert read_json(run_dir / "evaluation-test.json")["class_names"] == ["cat", "dog"]


def test_labels_with_dollar_signs_are_plain_text(tmp_path: Path) -> None:
    """Class names go to matplotlib as tick labels; '$...$' must not be parsed as mathtext
    (an invalid formula like '$x^$' failed the run after training)."""
    data = tmp_path / "prices.csv"
    data.write_text(csv_rows(40, lambda i: ["$x^$", "$y$"][i % 2]))
    config = write_config(
        tmp_path, f"name: prices\ndata:\n  dataset: {data}\ntrain:\n  max_iterations: 100\n"
    )
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert read_json(only_run(tmp_path / "runs") / "run.json")["status"] == "completed"
