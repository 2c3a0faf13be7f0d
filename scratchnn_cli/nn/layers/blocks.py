"""Element-wise layer work on several cores, one block of samples per thread.

NumPy runs a ufunc (a + b, np.maximum, ...) on one core, while the matrix products go to BLAS,
which uses every thread it is allowed. On the CNN of configs/fashion_cnn.yaml with 2 threads,
the element-wise parts (batch norm, ReLU, max-pooling, im2col's copy) were 2/3 of an update,
on one core. ``in_blocks(f, *arrays)`` calls ``f`` on consecutive blocks of samples (rows of
axis 0) of every array, one block per thread: NumPy lets go of the GIL inside a ufunc on large
arrays, so the blocks run at the same time. ``f`` writes its results into (views of) arrays it
is given. Each sample's numbers go through the same operations whatever the blocks, so the
results are bitwise the same with 1 or n threads.

The number of threads is process-wide: ``set_threads(n)``; the trainer calls ``follow_blas()``
when it starts, which sets the number BLAS may use (1 in a sweep's or a reproduce worker, every
core for one ``scratchnn train``). Arrays under ``MIN_BLOCK`` numbers per thread are not
split: the hand-off costs ~20 µs, a ufunc on 64k float32 numbers about as much.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_info

MIN_BLOCK = 1 << 16  # numbers per thread below which a call runs in one block

_threads = 1
_pool: ThreadPoolExecutor | None = None


def set_threads(n: int) -> None:
    """Split element-wise work over ``n`` threads from now on (1: never)."""
    global _threads, _pool
    n = max(1, int(n))
    if n != _threads and _pool is not None:
        _pool.shutdown()
        _pool = None
    _threads = n


def threads() -> int:
    """How many threads element-wise work is split over."""
    return _threads


def follow_blas() -> None:
    """Split element-wise work over as many threads as BLAS may use now (``threadpoolctl``
    reports the limit a caller set with ``threadpool_limits``)."""
    blas = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    set_threads(max(blas, default=1))


def in_blocks(f: Callable[..., None], *arrays: np.ndarray) -> None:
    """f(*blocks) for consecutive blocks of samples of ``arrays`` (all of the same length
    along axis 0), one block per thread; f writes into the blocks it is given."""
    global _pool
    if _threads == 1 or arrays[0].size < 2 * MIN_BLOCK:
        f(*arrays)
        return
    m = arrays[0].shape[0]
    n = min(_threads, m, arrays[0].size // MIN_BLOCK)
    if _pool is None:
        _pool = ThreadPoolExecutor(_threads, thread_name_prefix="scratchnn-blocks")
    bounds = [m * k // n for k in range(n + 1)]
    futures = [
        _pool.submit(f, *(a[lo:hi] for a in arrays))
        for lo, hi in zip(bounds[1:-1], bounds[2:], strict=True)
    ]
    try:
        f(*(a[: bounds[1]] for a in arrays))  # the first block in this thread
    finally:  # never return while another thread still writes
        for future in futures:
            future.result()
