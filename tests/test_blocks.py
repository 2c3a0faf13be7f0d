"""Element-wise layer work split over threads (nn/layers/blocks.py): every block of samples is
computed exactly once, errors come back, and every layer that splits its work gives bitwise
the same forward and backward results with 1 or 3 threads (blocks forced small, so that the
test's small arrays are split), in float64 and float32; a whole training run too."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from scratchnn_cli.config import TrainConfig
from scratchnn_cli.nn.layers import (
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    MaxPool2D,
    ReLU,
    blocks,
)
from scratchnn_cli.nn.network import Network
from scratchnn_cli.training.loop import train


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Split arrays of any size (a block may be one sample); back to 1 thread afterwards."""
    monkeypatch.setattr(blocks, "MIN_BLOCK", 1)
    yield
    blocks.set_threads(1)


def test_every_row_is_handed_to_exactly_one_block_and_several_threads_run(
    small_blocks: None,
) -> None:
    blocks.set_threads(3)
    X = np.arange(7 * 4, dtype=np.float64).reshape(7, 4)
    out = np.zeros_like(X)
    seen: list[tuple[int, str]] = []
    lock = threading.Lock()

    def f(x: np.ndarray, o: np.ndarray) -> None:
        o += x + 1.0  # += : a row handed to two blocks would be added twice
        with lock:
            seen.append((x.shape[0], threading.current_thread().name))

    blocks.in_blocks(f, X, out)
    np.testing.assert_array_equal(out, X + 1.0)
    assert sorted(n for n, _ in seen) == [2, 2, 3]
    assert len({name for _, name in seen}) >= 2  # the caller's thread and a pool thread


def test_one_thread_calls_f_once_on_the_whole_arrays(small_blocks: None) -> None:
    blocks.set_threads(1)
    X = np.ones((6, 2))
    calls: list[int] = []
    blocks.in_blocks(lambda x: calls.append(x.shape[0]), X)
    assert calls == [6]


def test_an_error_in_a_block_is_raised_after_every_block_finished(small_blocks: None) -> None:
    blocks.set_threads(2)
    X = np.arange(4.0).reshape(4, 1)
    done = np.zeros(4)

    def f(x: np.ndarray, d: np.ndarray) -> None:
        d[...] = 1.0
        if x[0, 0] >= 2:  # the second block, in the pool's thread
            raise ValueError("bad block")

    with pytest.raises(ValueError, match="bad block"):
        blocks.in_blocks(f, X, done)
    np.testing.assert_array_equal(done, np.ones(4))


def test_follow_blas_takes_the_limit_the_caller_set() -> None:
    try:
        with threadpool_limits(1):
            blocks.follow_blas()
            assert blocks.threads() == 1
        with threadpool_limits(2):
            blocks.follow_blas()
            assert blocks.threads() == 2
    finally:
        blocks.set_threads(1)


LAYERS = [
    pytest.param(lambda: ReLU(), (5, 4, 3), id="relu"),
    pytest.param(lambda: BatchNorm(), (5, 4, 3), id="batchnorm-images"),
    pytest.param(lambda: BatchNorm(), (7,), id="batchnorm-dense"),
    pytest.param(lambda: MaxPool2D(2), (6, 4, 3), id="maxpool-tiling"),
    pytest.param(lambda: MaxPool2D(3, stride=1), (5, 5, 2), id="maxpool-overlapping"),
    pytest.param(lambda: AvgPool2D(2), (4, 4, 2), id="avgpool"),
    pytest.param(lambda: Conv2D(3, 3, padding="same"), (5, 6, 1), id="conv-1-channel-same"),
    pytest.param(lambda: Conv2D(4, 3, padding="same"), (5, 6, 3), id="conv-3-channels-same"),
    pytest.param(lambda: Conv2D(2, (3, 2), stride=2), (7, 6, 2), id="conv-stride-2-valid"),
]


def forward_backward(
    make: object, shape: tuple[int, ...], dtype: type, threads: int, training: bool
) -> list[np.ndarray]:
    """A, dA_prev and the gradients of one layer (in a network) on a batch of 9 samples."""
    blocks.set_threads(threads)
    layer: Layer = make()  # type: ignore[operator]
    tail = [Flatten()] if len(layer.output_shape_for(shape)) > 1 else []
    net = Network.from_layers(
        [layer, *tail],
        shape,
        3,
        "softmax",
        rng=np.random.default_rng(0),
        dtype=dtype,
    )
    rng = np.random.default_rng(1)
    net.theta[...] = rng.normal(0, 0.5, net.theta.shape)
    first = net.layers[0]
    X = rng.normal(size=(9, *shape)).astype(dtype)
    if isinstance(first, MaxPool2D):
        X = np.round(X, 1)  # ties, so that the tie sharing is exercised
    A = first.forward(X, training)
    dA = rng.normal(size=A.shape).astype(dtype)
    dX = first.backward(dA.copy(), True)
    return [A.copy(), np.array(dX), *(g.copy() for g in first.grads.values())]


@pytest.mark.parametrize(("make", "shape"), LAYERS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("training", [True, False])
def test_three_threads_give_bitwise_the_results_of_one(
    small_blocks: None, make: object, shape: tuple[int, ...], dtype: type, training: bool
) -> None:
    one = forward_backward(make, shape, dtype, 1, training)
    three = forward_backward(make, shape, dtype, 3, training)
    assert len(one) == len(three)
    for a, b in zip(one, three, strict=True):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a, b)


def test_a_training_run_is_bitwise_the_same_with_1_and_2_threads(small_blocks: None) -> None:
    def run(threads: int) -> np.ndarray:
        layers = [
            Conv2D(4, 3, padding="same"),
            BatchNorm(),
            ReLU(),
            MaxPool2D(2),
            Flatten(),
            Dense(8),
            ReLU(),
            Dropout(0.2),
        ]
        net = Network.from_layers(
            layers,
            (6, 6, 1),
            3,
            "softmax",
            rng=np.random.default_rng(0),
            init="he",
            dropout_rng=np.random.default_rng(1),
        )
        data = np.random.default_rng(2)
        X, y = data.normal(size=(40, 6, 6, 1)), data.integers(0, 3, 40)
        cfg = TrainConfig(lr=0.01, eps=0.0, max_iterations=30, batch_size=8, optimizer="adam")
        with threadpool_limits(threads):  # train() follows BLAS's limit
            train(net, X, y, 3, cfg, np.random.default_rng(3))
            assert blocks.threads() == threads
        return net.theta.copy()

    np.testing.assert_array_equal(run(1), run(2))
