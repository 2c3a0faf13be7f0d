"""The image layers' work split over threads, by samples (rows).

A convolutional network's batch is many samples treated alike: im2col copies each sample's
windows, ReLU and pooling look at one sample at a time, and a matrix product's rows are one
sample's (or one position's) dot products. ``in_parallel(m, step, size)`` calls ``step(rows)``
for slices ``rows`` that cover the m samples, each slice on its own thread (NumPy releases the
GIL inside its loops, copies and BLAS calls); ``matmul(A, B)`` is A @ B with A's rows split so.

Every number is computed by the same operations in the same order whichever slice holds it, so
a network trains to the same bits with 1 thread or with 8 (tests/test_threads.py checks it,
matrix products included: NumPy's OpenBLAS computes a row of A @ B the same way however many
rows it is given, as long as the product stays large); the thread count is a speed setting,
not part of an experiment.

``with threads(n):`` sets the count for the code inside (a context variable: another thread,
or a Dask task, keeps its own: 1, outside any ``threads``) and holds BLAS to 1 thread there:
the n threads are ours, and BLAS's own (which spin on a core for a while after each product)
would take the cores they need. With 1 thread, or work too small to pay for a hand-off (tens of
microseconds), ``step`` runs once on every sample, as plain NumPy code.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar

import numpy as np
from threadpoolctl import ThreadpoolController

#: Below this many numbers touched, a step runs on one thread (a hand-off costs ~20-50 us).
MIN_SPLIT = 1 << 18
#: A matrix product is split only if each part keeps this many rows and multiply-adds, so that
#: each part takes the path through NumPy and OpenBLAS that the whole product takes. Measured
#: here (float32 and float64): parts of one row always changed the bits, of 2-8 rows sometimes;
#: and OpenBLAS computes products below about 10^6 multiply-adds with other kernels: cutting
#: cols^T @ dZ of 144 x 512 @ 512 x 32 into parts of 48 rows (786k each) changed the bits, into
#: parts of 72 (1.2M) did not. Larger cuts never did (up to 25088 x 288 @ 288 x 64, and
#: transposed); the limit keeps a margin of 4.
MIN_PART_ROWS = 16
MIN_PART_PRODUCT = 1 << 22

#: (the pool of helper threads, the thread count) where ``threads(n > 1)`` is in force
_pool: ContextVar[tuple[ThreadPoolExecutor, int] | None] = ContextVar(
    "scratchnn_threads", default=None
)


@functools.cache
def _blas() -> ThreadpoolController:
    """The BLAS libraries this process loaded (found once: a search costs ~3 ms)."""
    return ThreadpoolController()


def blas_threads(n: int) -> AbstractContextManager[object]:
    """``with blas_threads(1):`` holds BLAS to n threads inside the block (where several
    trainings run at once, one thread each: unpinned they were 10-60x slower here)."""
    return _blas().limit(limits=n)


@contextmanager
def threads(n: int | None) -> Iterator[int]:
    """Split the layers' work over ``n`` threads inside the block, BLAS on one (``None``: one
    per CPU core this process may use). Yields the count used."""
    count = usable_cores() if n is None else n
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"threads must be a whole number >= 1, got {n!r}")
    # the calling thread works too: count - 1 helpers
    pool = ThreadPoolExecutor(count - 1, thread_name_prefix="scratchnn") if count > 1 else None
    token = _pool.set(None if pool is None else (pool, count))
    try:
        with blas_threads(1):
            yield count
    finally:
        _pool.reset(token)
        if pool is not None:
            pool.shutdown()


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def thread_count() -> int:
    """How many threads ``in_parallel`` splits over here."""
    current = _pool.get()
    return 1 if current is None else current[1]


def parts(m: int, count: int) -> list[slice]:
    """range(m) in at most ``count`` slices of ceil(m / count), the last one maybe shorter."""
    size = math.ceil(m / count)
    return [slice(i, min(i + size, m)) for i in range(0, m, size)]


def in_parallel(
    m: int,
    step: Callable[[slice], object],
    size: int,
    product: tuple[int, int, int] | None = None,
) -> None:
    """``step(part)`` for slices of range(m) that cover it (samples, rows): one slice per thread
    when ``size`` (the numbers the step touches) is worth splitting, else ``step(slice(None))``
    once. ``product = (rows per sample, K, N)``: the step multiplies its samples' rows by a K x N
    matrix, so slices are cut only while each keeps MIN_PART_ROWS rows and MIN_PART_PRODUCT."""
    current = _pool.get()
    if current is None or size < MIN_SPLIT or m < 2:
        step(slice(None))
        return
    pool, count = current
    first, *rest = parts(m, count)
    if product is not None:
        rows = (rest[-1].stop - rest[-1].start if rest else m) * product[0]
        if rows < MIN_PART_ROWS or rows * product[1] * product[2] < MIN_PART_PRODUCT:
            step(slice(None))
            return
    futures = [pool.submit(step, part) for part in rest]
    try:
        step(first)  # the calling thread takes the first slice
    finally:
        wait(futures)  # no helper still writing once this returns or raises
    for future in futures:
        future.result()


def matmul(A: np.ndarray, B: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """A @ B for 2-D arrays, the rows of A split over the threads when every part stays a large
    product (else one plain call, with nothing added to a tiny network's step). Never by the
    columns of B: for the one-channel conv's dW = cols^T dZ (9 rows) two column halves on two
    threads took 4.0 ms against 2.2 ms for one call (and BLAS's own two threads 2.0 ms)."""
    if _pool.get() is None or A.ndim != 2 or B.ndim != 2:
        return A @ B if out is None else np.matmul(A, B, out=out)
    if out is None:
        out = np.empty((len(A), B.shape[1]), dtype=np.result_type(A, B))
    result = out

    def rows(r: slice) -> None:
        np.matmul(A[r], B, out=result[r])

    in_parallel(len(A), rows, A.size + out.size, product=(1, *B.shape))
    return out
