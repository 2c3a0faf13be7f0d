"""The package layering README.md's "Developing" table promises: what each part never imports.

Each module is imported in a fresh interpreter (nothing else loaded first), and the scratchnn
packages that import pulled in are compared with the table. So a maths module that starts
importing the run-folder code, or the config importing the data loaders, fails here."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# module -> top-level parts of scratchnn_cli it must never load (README.md, "Developing")
NEVER = {
    "scratchnn_cli.config": ["data", "runs", "report", "cli"],
    "scratchnn_cli.data": ["nn", "training", "runs", "report", "cli"],
    "scratchnn_cli.nn": ["config", "data", "training", "runs", "report", "cli", "errors"],
    "scratchnn_cli.training": ["runs", "report", "cli"],
    "scratchnn_cli.build": ["runs", "report", "cli"],
    # storage only stores: it is handed finished records and bytes
    "scratchnn_cli.runs": [
        "build",
        "cli",
        "config",
        "data",
        "experiment",
        "metrics",
        "nn",
        "report",
        "training",
    ],
    # pictures, pages and displays of what it is given: it loads and trains nothing itself
    "scratchnn_cli.report": ["experiment", "cli", "sweep", "reproduce", "training"],
    "scratchnn_cli.records": ["build", "config", "data", "nn", "runs", "report", "training", "cli"],
}


PROBE = """
import importlib, json, pkgutil, sys
root = importlib.import_module(sys.argv[1])
for found in pkgutil.walk_packages(getattr(root, "__path__", []), root.__name__ + "."):
    importlib.import_module(found.name)  # every module of a package, not just its __init__
print(json.dumps(sorted({k.split(".")[1] for k in sys.modules if k.startswith("scratchnn_cli.")})))
"""


def loaded_parts(module: str) -> set[str]:
    """The parts of scratchnn_cli (``nn``, ``runs``...) that importing ``module`` (and, for a
    package, every module in it) loads."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, module], capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("module", sorted(NEVER))
def test_each_part_never_imports_what_the_readme_says(module: str) -> None:
    parts = loaded_parts(module)
    assert module.split(".")[1] in parts  # the probe itself works
    assert not parts & set(NEVER[module]), sorted(parts & set(NEVER[module]))


def test_the_probe_sees_an_import_that_breaks_the_rule() -> None:
    """experiment.py puts everything together: it loads runs and report, which build must not."""
    assert {"runs", "report", "build"} <= loaded_parts("scratchnn_cli.experiment")
