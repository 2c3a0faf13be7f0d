"""The layers' heavy work split over threads, by samples (rows).

A batch is many samples treated alike: a dense or conv layer's matrix product has a row per
sample (or per sample's position), im2col copies each sample's windows, ReLU, batch norm and
max-pooling look at one sample at a time. ``in_parallel(m, step, size)`` calls ``step(rows)``
for slices ``rows`` that cover the m samples, each slice on its own thread (NumPy releases the
GIL inside its loops, copies and BLAS calls). The layers reach it through two helpers that keep
their formulas whole (and conv2d's col2im calls it itself):

- ``matmul(A, B)``: A @ B, the rows of A split so (the dense and conv layers' products);
- ``@by_samples`` on a formula ``f(X, ..., out)`` that treats each sample on its own: the
  decorated f computes it a slice of the samples per thread.

Only work that touches millions of numbers is split (smaller work runs once, as plain NumPy
code: a hand-off costs tens of microseconds); the rest of the layers is plain NumPy.

Every number is computed by the same operations in the same order whichever slice holds it, so
a network trains to the same bits with 1 thread or with 8 (tests/test_threads.py checks it,
matrix products included: NumPy's OpenBLAS computes a row of A @ B the same way however many
rows it is given, as long as the product stays large); the thread count is a speed setting,
not part of an experiment.

``with threads(n):`` sets the count for the code inside (a context variable: another thread,
or a Dask task, keeps its own: 1, outside any ``threads``) and holds BLAS to 1 thread there,
for the same bits: BLAS's own threads cut the inner dimension of some products into other
blocks than one thread does, which changes their sums (OpenBLAS 0.3.31, float32: 128 x 784 @
784 x 256, a dense layer's forward on Fashion-MNIST), where cutting rows never did.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar

import numpy as np
from threadpoolctl import ThreadpoolController

#: Below this many numbers touched, a step runs on one thread (a hand-off: tens of microseconds).
MIN_SPLIT = 1 << 18
#: A matrix product is split only if each part keeps this many rows and multiply-adds, so that
#: each part takes the path through NumPy and OpenBLAS that the whole product takes (and pays
#: for its hand-off): parts of 1-8 rows, or below about 10^6 multiply-adds (where OpenBLAS
#: switches kernels), changed the bits here; larger cuts never did. The limit keeps a margin of 4.
MIN_PART_ROWS = 16
MIN_PART_PRODUCT = 1 << 22


class _Helper(threading.Thread):
    """A thread that runs the steps handed to it, one at a time, waiting on a lock in between
    (lighter than a ThreadPoolExecutor's futures: a dense layer's split product is a few
    hundred microseconds)."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._go, self._done = threading.Lock(), threading.Lock()
        self._go.acquire()
        self._done.acquire()
        self._step: Callable[[], object] | None = None
        self._error: BaseException | None = None
        self._busy = False  # a step handed and not yet waited for
        self.start()

    def run(self) -> None:
        while True:
            self._go.acquire()
            if self._step is None:
                return
            try:
                self._step()
            except BaseException as exc:  # handed to the caller by wait()
                self._error = exc
            self._done.release()

    def hand(self, step: Callable[[], object] | None) -> None:
        """Run ``step`` on this thread (``None``: end the thread)."""
        if self._busy:  # the caller's wait was interrupted (Ctrl-C): the last step ends first
            self.wait()
        self._busy = True
        self._step = step
        self._go.release()

    def wait(self) -> BaseException | None:
        """Wait until the step handed is done; its exception, if it raised one."""
        self._done.acquire()
        self._busy = False
        error, self._error = self._error, None
        return error

    def stop(self) -> None:
        self.hand(None)
        self.join()


class _Pool:
    """The helpers of ``threads(n)``: n - 1 threads (the calling thread works too)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.helpers = [_Helper(f"scratchnn_{i}") for i in range(count - 1)]
        #: held while the helpers work: a step that splits its own work runs it whole
        self.in_use = threading.Lock()

    def close(self) -> None:
        for helper in self.helpers:
            helper.stop()


#: the helper threads where ``threads(n > 1)`` is in force
_pool: ContextVar[_Pool | None] = ContextVar("scratchnn_threads", default=None)


@functools.cache
def _blas() -> ThreadpoolController:
    """The BLAS libraries this process loaded (found once: the search takes milliseconds)."""
    return ThreadpoolController()


def blas_threads(n: int) -> AbstractContextManager[object]:
    """``with blas_threads(1):`` holds BLAS to n threads inside the block (where several
    trainings run at once, one thread each: unpinned, their BLAS threads fight for the cores)."""
    return _blas().limit(limits=n)


@contextmanager
def threads(n: int | None) -> Iterator[int]:
    """Split the layers' work over ``n`` threads inside the block, BLAS on one (``None``: one
    per CPU core this process may use). Yields the count used."""
    count = usable_cores() if n is None else n
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"threads must be a whole number >= 1, got {n!r}")
    pool = _Pool(count) if count > 1 else None
    token = _pool.set(pool)
    try:
        with blas_threads(1):
            yield count
    finally:
        _pool.reset(token)
        if pool is not None:
            pool.close()


def usable_cores() -> int:
    """The CPU cores this process may use: joblib's count, which reads the CPU affinity and a
    container's CPU quota (the sweep's workers are counted the same way)."""
    import joblib  # scikit-learn's dependency; imported when a count is needed

    return joblib.cpu_count()


def thread_count() -> int:
    """How many threads ``in_parallel`` splits over here."""
    pool = _pool.get()
    return 1 if pool is None else pool.count


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
    pool = _pool.get()
    cut = parts(m, pool.count) if pool is not None and size >= MIN_SPLIT else []
    if product is not None and len(cut) > 1:
        rows = (cut[-1].stop - cut[-1].start) * product[0]  # the last part is the smallest
        if rows < MIN_PART_ROWS or rows * product[1] * product[2] < MIN_PART_PRODUCT:
            cut = []
    # one slice, or the helpers busy (a step that splits its own work): the step on every sample
    if pool is None or len(cut) < 2 or not pool.in_use.acquire(blocking=False):
        step(slice(None))
        return
    first, *rest = cut
    helpers = pool.helpers[: len(rest)]
    try:
        for helper, part in zip(helpers, rest, strict=True):
            helper.hand(functools.partial(step, part))
        try:
            step(first)  # the calling thread takes the first slice
        finally:
            errors = [helper.wait() for helper in helpers]  # no helper still writing after this
    finally:
        pool.in_use.release()
    for error in errors:
        if error is not None:
            raise error


def by_samples(formula: Callable[..., object]) -> Callable[..., np.ndarray]:
    """``@by_samples`` on ``formula(*arrays, out, **whole)``, a formula that treats each sample
    (row) of its positional arrays and of ``out`` on its own: the decorated function computes it
    on a slice of the samples per thread, the keyword arguments (per-channel rows, sizes) passed
    whole. ``out`` defaults to a new array like the first argument; it is returned."""

    @functools.wraps(formula)
    def split(*arrays: np.ndarray, out: np.ndarray | None = None, **whole: object) -> np.ndarray:
        result = np.empty_like(arrays[0]) if out is None else out
        if _pool.get() is None or result.size < MIN_SPLIT:  # one thread: the formula as it is
            formula(*arrays, out=result, **whole)
            return result

        def step(s: slice) -> None:
            formula(*(X[s] for X in arrays), out=result[s], **whole)

        in_parallel(len(result), step, result.size)
        return result

    return split


def matmul(A: np.ndarray, B: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """A @ B for 2-D arrays, the rows of A split over the threads when every part stays a large
    product (else one plain call, with nothing added to a tiny network's step). Never by the
    columns of B: for the one-channel conv's dW = cols^T dZ (9 rows), two column halves on two
    threads were slower than one call."""
    if _pool.get() is None or A.ndim != 2 or B.ndim != 2 or A.size * B.shape[1] < MIN_PART_PRODUCT:
        return A @ B if out is None else np.matmul(A, B, out=out)
    if out is None:
        out = np.empty((len(A), B.shape[1]), dtype=np.result_type(A, B))
    result = out

    def rows(r: slice) -> None:
        np.matmul(A[r], B, out=result[r])

    in_parallel(len(A), rows, A.size * B.shape[1], product=(1, *B.shape))  # multiply-adds
    return out
