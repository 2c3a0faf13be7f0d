"""Speed benchmarks of scratchnn: ``make bench``, i.e. ``python benchmarks/bench.py [--quick]
[--only NAME] [-v]``; not part of ``make test``. Run as a script (``benchmarks/`` is then on
``sys.path``). Each section is a function ``(opts, console) -> None`` in its own module, listed
in ``SECTIONS``; what they share is in ``common.py``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import numpy as np
from cnn import cnn
from diagnostics_cost import diagnostics
from engines import engines
from mlp import mlp
from rich.console import Console
from single_sample import single_sample

SECTIONS: dict[str, Callable[[argparse.Namespace, Console], None]] = {
    "single-sample": single_sample,
    "mlp": mlp,
    "cnn": cnn,
    "engines": engines,
    "diagnostics": diagnostics,
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="scratchnn speed benchmarks. Sections: " + ", ".join(SECTIONS)
    )
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME[,NAME...]",
        help=f"run only these sections (of: {', '.join(SECTIONS)}); may be repeated",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=0,
        help="best of N timings (default: single-sample 20, mlp 3, cnn 2, engines 5; "
        "3, 1, 1, 2 with --quick); diagnostics: N rounds of each case",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="more detail: every NumPy call site of a step, every GEMM of the mlp floor",
    )
    opts = parser.parse_args(argv)
    names = [n.strip() for item in opts.only for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    opts.sections = names or list(SECTIONS)
    return opts


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(
        f"[dim]numpy {np.__version__}, Python {sys.version.split()[0]}, "
        f"{'quick run' if opts.quick else 'full run'}[/]"
    )
    for name in opts.sections:
        SECTIONS[name](opts, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
