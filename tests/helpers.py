"""Small helpers shared by the test files (pytest puts tests/ on sys.path)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from scratchnn_cli.cli import app

# small and fast: blobs400 (200 / 100 / 100 samples), a hidden layer of 3, 1000 iterations
SMALL_CONFIG = """\
name: {name}
seed: 0
data:
  dataset: blobs400
  split: [0.5, 0.25, 0.25]
model:
  struct: [3]
  sigma: 0.5
train:
  lr: 0.05
  eps: 0
  max_iterations: {max_iterations}
"""


# a sweep's base spec: circles500, a leaky-ReLU hidden layer of 4, 1,000 single-sample updates
TINY_SWEEP = """\
name: tiny
seed: 0
data:
  dataset: circles500
model:
  struct: [4]
  activation: leaky_relu
  sigma: 0.5
train:
  lr: 0.1
  eps: 0
  max_iterations: 1000
  checkpoint_every: 1
"""


def invoke(*args: object) -> Result:
    """Run the ``scratchnn`` CLI in-process with these arguments (paths become strings)."""
    return CliRunner().invoke(app, [str(a) for a in args])


def numeric_grad(f: Callable[[], float], P: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """dJ/dP by central differences, perturbing the array ``P`` in place (restored after).

    Written independently of ``scratchnn_cli.nn.gradcheck`` so the tests do not trust the code
    they check.
    """
    grad = np.zeros_like(P, dtype=np.float64)
    for idx in np.ndindex(P.shape):
        saved = P[idx]
        P[idx] = saved + h
        f_plus = f()
        P[idx] = saved - h
        f_minus = f()
        P[idx] = saved
        grad[idx] = (f_plus - f_minus) / (2 * h)
    return grad


def assert_one_line_error(result: Result, code: int = 2) -> str:
    """Exit ``code``, exactly one non-empty output line, which is the error; no traceback, and
    no exception other than the exit itself."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:"), lines[0]
    return lines[0]


def require_dask() -> None:
    """Fail under CI=true (make install installs the dask extra), skip elsewhere, when
    dask.distributed is missing."""
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("dask.distributed is not installed: pip install -e '.[test,dask]'")
        pytest.skip("dask.distributed is not installed (pip install -e '.[dask]')")


@contextlib.contextmanager
def loopback_cluster() -> Iterator[str]:
    """A Dask LocalCluster (one single-threaded worker, in this process) on 127.0.0.1 over tcp,
    reached by its address like a remote one: yields the scheduler address; closed after."""
    require_dask()
    from dask.distributed import LocalCluster

    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        host="127.0.0.1",
        protocol="tcp",
        dashboard_address=None,
    ) as cluster:
        yield cluster.scheduler_address
