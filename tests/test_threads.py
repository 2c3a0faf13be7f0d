"""nn/threads.py: the layers' work split over threads, by samples.

What is claimed: every sample is handed to exactly one slice, the thread count and BLAS limit
hold inside ``threads(n)`` only, and a network computes the same bits on 1 thread or on 3 (the
forward pass, every gradient, the running statistics, a whole training run through the CLI).
The tests set ``MIN_SPLIT`` to 0, so that the small arrays used here are split too (otherwise
they would run on one thread and the comparisons would prove nothing).
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error, invoke
from threadpoolctl import threadpool_info

import scratchnn_cli.nn.threads as threads_module
from scratchnn_cli.nn.layers import (
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Layer,
    MaxPool2D,
    ReLU,
)
from scratchnn_cli.nn.network import Network
from scratchnn_cli.nn.threads import in_parallel, matmul, thread_count, threads

ROOT = Path(__file__).resolve().parent.parent
DIGITS_CNN = ROOT / "configs" / "digits_cnn.yaml"


@pytest.fixture
def split_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads_module, "MIN_SPLIT", 0)


# --------------------------------------------------------------------------- the mechanism


def test_each_sample_goes_to_one_slice_and_each_slice_to_its_own_thread(
    split_everything: None,
) -> None:
    seen: list[tuple[int, int, str]] = []

    def step(rows: slice) -> None:
        time.sleep(0.2)  # long enough that one helper cannot take two slices
        seen.append((rows.start, rows.stop, threading.current_thread().name))

    with threads(3):
        in_parallel(10, step, size=10)
    assert sorted((start, stop) for start, stop, _ in seen) == [(0, 4), (4, 8), (8, 10)]
    names = {name for _, _, name in seen}
    assert len(names) == 3
    assert threading.current_thread().name in names  # the caller takes a slice itself


def test_small_work_and_one_thread_run_the_step_once_on_every_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[slice] = []
    with threads(2):
        in_parallel(10, calls.append, size=threads_module.MIN_SPLIT - 1)
    assert calls == [slice(None)]
    monkeypatch.setattr(threads_module, "MIN_SPLIT", 0)
    calls.clear()
    in_parallel(10, calls.append, size=10)  # outside any threads(n): one thread
    with threads(1):
        in_parallel(10, calls.append, size=10)
    with threads(4):
        in_parallel(1, calls.append, size=10)  # one sample cannot be split
    assert calls == [slice(None)] * 3


def test_a_step_that_multiplies_matrices_is_cut_only_into_large_products(
    split_everything: None,
) -> None:
    calls: list[slice] = []
    with threads(2):
        in_parallel(10, calls.append, 10, product=(1, 64, 64))  # 5 rows x 64 x 64 a part
        assert calls == [slice(None)]
        calls.clear()
        in_parallel(64, calls.append, 10, product=(4, 1, 10**9))  # 32 samples, 128 rows a part
        assert sorted(c.start for c in calls) == [0, 32]
        calls.clear()
        in_parallel(6, calls.append, 10, product=(5, 10**6, 10**6))  # 15 rows: too few
        assert calls == [slice(None)]


def test_an_error_in_a_helper_reaches_the_caller_once_every_slice_is_done(
    split_everything: None,
) -> None:
    finished: list[int] = []

    def step(rows: slice) -> None:
        if rows.start == 0:
            time.sleep(0.1)
            finished.append(rows.start)
        else:
            raise ValueError(f"slice {rows.start} failed")

    with threads(2), pytest.raises(ValueError, match="slice 5 failed"):
        in_parallel(10, step, size=10)
    assert finished == [0]  # the caller's own slice ran to its end first


def test_a_step_that_splits_its_own_work_runs_it_whole(split_everything: None) -> None:
    inner: list[list[slice]] = []

    def step(rows: slice) -> None:
        calls: list[slice] = []
        in_parallel(4, calls.append, size=10)  # the helpers are busy with the outer slices
        inner.append(calls)

    with threads(2):
        in_parallel(10, step, size=10)
    assert inner == [[slice(None)], [slice(None)]]


@pytest.mark.parametrize("n", [0, -2, True, 2.0, "2"])
def test_threads_refuses_anything_but_a_whole_number_from_one(n: object) -> None:
    with pytest.raises(ValueError, match="threads must be a whole number >= 1"), threads(n):  # type: ignore[arg-type]
        pass


def blas_threads() -> list[int]:
    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


def test_the_count_and_the_blas_limit_hold_inside_the_block_only() -> None:
    before = blas_threads()
    other: list[int] = []
    with threads(3) as count:
        assert count == thread_count() == 3
        assert blas_threads() and set(blas_threads()) == {1}
        helper = threading.Thread(target=lambda: other.append(thread_count()))
        helper.start()
        helper.join()
    assert other == [1]  # another thread (a Dask task, say) does not inherit the count
    assert thread_count() == 1
    assert blas_threads() == before
    with threads(None) as count:
        assert count == threads_module.usable_cores() == thread_count()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("rows", "inner", "cols"),
    [
        (7, 5, 3),  # parts of 3 rows: never split (few-row products go another way)
        (1001, 33, 17),  # parts below the product limit: one call
        (144, 512, 32),  # cols^T @ dZ of a small conv: parts of 48 rows would change the bits
        (25088, 288, 64),  # conv2d's cols @ W (batch 128, 14 x 14 x 32 in): rows split
        (288, 25088, 64),  # conv2d's dW = cols^T dZ (cols^T is a transposed view, below)
        (4001, 3136, 128),  # dense: an odd number of rows, the last part shorter
        (128, 784, 256),  # dense: the Fashion-MNIST MLP's first layer, batch 128
        (784, 128, 256),  # and its dW = A_prev^T dZ
        (64, 784, 256),  # batch 64: parts of 22 rows
    ],
)
def test_matmul_split_over_threads_gives_the_bits_of_one_product(
    split_everything: None, dtype: type, rows: int, inner: int, cols: int
) -> None:
    gen = np.random.default_rng(rows)
    A = gen.standard_normal((rows, inner)).astype(dtype)
    B = gen.standard_normal((inner, cols)).astype(dtype)
    AT = np.asfortranarray(A.T).T  # a transposed layout, as cols.T in conv2d's backward
    with threads(3):
        assert np.array_equal(matmul(A, B), A @ B)
        assert np.array_equal(matmul(AT, B), AT @ B)
        out = np.empty((rows, cols), dtype=dtype)
        assert matmul(A, B, out=out) is out
        assert np.array_equal(out, A @ B)
        stacked = gen.standard_normal((2, 3, inner)).astype(dtype)
        assert np.array_equal(matmul(stacked, B), stacked @ B)  # a 3-D product: one call


def test_matmul_splits_only_products_whose_parts_stay_large(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[int, int]] = []
    real = np.matmul

    def counting(A: np.ndarray, B: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        calls.append((A.shape[0], B.shape[1]))
        return real(A, B, out=out)

    monkeypatch.setattr(threads_module.np, "matmul", counting)
    with threads(2):
        matmul(np.ones((25088, 288)), np.ones((288, 64)), out=np.empty((25088, 64)))
        assert sorted(calls) == [(12544, 64), (12544, 64)]
        calls.clear()
        matmul(np.ones((9, 100352)), np.ones((100352, 32)), out=np.empty((9, 32)))  # 5 + 4 rows
        assert calls == [(9, 32)]
        calls.clear()
        matmul(np.ones((101, 33)), np.ones((33, 17)), out=np.empty((101, 17)))  # 29k a part
        assert calls == [(101, 17)]


# --------------------------------------------------------------------------- the layers


def cnn_layers(pool: Layer) -> list[Layer]:
    """Every layer that splits its work, the one-channel and the many-channel im2col."""
    return [
        Conv2D(4, 3, padding="same"),  # one input channel: a copy per kernel offset
        BatchNorm(),
        ReLU(),
        pool,
        Conv2D(6, 3, stride=2, padding="same"),  # many channels: the window view
        BatchNorm(),
        ReLU(),
        Conv2D(5, 2),
        GlobalAvgPool(),
        Dense(8),
        ReLU(),
        Dropout(0.25),
    ]


def one_step(
    layers: list[Layer],
    dtype: type,
    count: int,
    image: tuple[int, ...] = (12, 12, 1),
    m: int = 7,
) -> dict[str, np.ndarray]:
    """A training forward and backward, then an evaluation forward, on ``count`` threads."""
    net = Network.from_layers(
        layers,
        image,
        3,
        "softmax",
        rng=np.random.default_rng(0),
        init="he",
        dtype=dtype,
        dropout_rng=np.random.default_rng(1),
    )
    gen = np.random.default_rng(2)
    X = gen.standard_normal((m, *image)).astype(dtype)  # 7 samples: slices of 3, 3 and 1
    Y = np.eye(3, dtype=dtype)[gen.integers(0, 3, size=m)]
    with threads(count):
        Z = net.forward(X, training=True)
        net.backward(net.loss.dZ(Z, Y))
        evaluated = net.forward(X)
        input_grad = net.layers[0].backward(np.ones_like(net.layers[0].forward(X)), True)
    return {"Z": Z, "dtheta": net.dtheta, "eval": evaluated, "dX": input_grad, **net.buffers()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "pool",
    [lambda: MaxPool2D(2), lambda: MaxPool2D(3, stride=1), lambda: AvgPool2D(2)],
    ids=["maxpool-tiling", "maxpool-overlapping", "avgpool"],
)
def test_a_cnn_computes_the_same_bits_on_one_thread_and_on_three(
    split_everything: None, dtype: type, pool: object
) -> None:
    one = one_step(cnn_layers(pool()), dtype, 1)  # type: ignore[operator]
    three = one_step(cnn_layers(pool()), dtype, 3)  # type: ignore[operator]
    assert sorted(one) == sorted(three)
    for name in one:
        assert one[name].dtype == dtype, name
        assert np.array_equal(one[name], three[name]), name
    assert np.any(one["dtheta"] != 0)


def test_the_two_block_fashion_cnn_at_batch_128_computes_the_same_bits_on_one_and_two() -> None:
    """The two-block Fashion-MNIST CNN (conv 32 and 64, batch norm, max-pooling, dense 128) at
    its real size, float32, the real split limits: here the matrix products are split too."""

    def layers() -> list[Layer]:
        return [
            Conv2D(32, 3, padding="same"), BatchNorm(), ReLU(), MaxPool2D(2),
            Conv2D(64, 3, padding="same"), BatchNorm(), ReLU(), MaxPool2D(2),
            Flatten(), Dense(128), ReLU(), Dropout(0.3),
        ]  # fmt: skip

    one = one_step(layers(), np.float32, 1, (28, 28, 1), 128)
    two = one_step(layers(), np.float32, 2, (28, 28, 1), 128)
    for name in one:
        assert np.array_equal(one[name], two[name]), name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_mlp_at_batch_128_computes_the_same_bits_on_one_thread_and_two(dtype: type) -> None:
    """The bench's 784-256-128-10 MLP, the real split limits: its first layer's products are
    split over the threads (by rows: BLAS's own threads would change their sums)."""

    def layers() -> list[Layer]:
        return [Dense(256), ReLU(), Dense(128), ReLU()]

    one = one_step(layers(), dtype, 1, (784,), 128)
    two = one_step(layers(), dtype, 2, (784,), 128)
    for name in one:
        assert np.array_equal(one[name], two[name]), name


def test_training_through_the_cli_gives_the_same_model_on_any_thread_count(
    split_everything: None, tmp_path: Path
) -> None:
    models, records = [], []
    for count in (1, 3):
        runs_dir = tmp_path / f"threads{count}"
        result = invoke(
            "train", DIGITS_CNN, "--set", "train.max_epochs=2", "--threads", count,
            "--runs-dir", runs_dir,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        (run_dir,) = runs_dir.iterdir()
        with np.load(run_dir / "model.npz", allow_pickle=False) as data:
            models.append({key: data[key] for key in data.files})
        records.append(json.loads((run_dir / "run.json").read_text(encoding="utf-8")))
    assert sorted(models[0]) == sorted(models[1])
    for name in models[0]:
        assert np.array_equal(models[0][name], models[1][name]), name
    assert [r["threads"] for r in records] == [1, 3]
    scored = []
    for count in (1, 3):
        result = invoke("evaluate", run_dir, "--threads", count)
        assert result.exit_code == 0, result.output
        scored.append(json.loads((run_dir / "evaluation-test.json").read_text(encoding="utf-8")))
    for record in scored:  # when it was written: the one key that may differ
        del record["evaluated"]
    assert scored[0] == scored[1]
    assert sum(map(sum, scored[0]["confusion_matrix"])) == scored[0]["n"] > 0
    pages = []
    for count in (1, 3):
        result = invoke("report", run_dir, "--threads", count)
        assert result.exit_code == 0, result.output
        page = (run_dir / "report.html").read_text(encoding="utf-8")
        pages.append(re.sub(r"generated [^<]*</footer>", "generated -</footer>", page, count=1))
    assert "generated -</footer>" in pages[0]  # the time of writing, the one difference
    assert pages[0] == pages[1]
    assert "misclassified" in pages[0].lower()


def test_a_thread_count_below_one_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("train", DIGITS_CNN, "--threads", 0, "--runs-dir", tmp_path / "runs")
    line = assert_one_line_error(result)
    assert "--threads" in line
    assert not (tmp_path / "runs").exists()
