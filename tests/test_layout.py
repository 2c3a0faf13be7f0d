"""The package layering README.md's "Developing" table promises: what each part never imports.

Each module is imported in a fresh interpreter (nothing else loaded first), and the scratchnn
packages that import pulled in are compared with the table. So a maths module that starts
importing the run-folder code, or the config importing the data loaders, fails here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BELOW_ALL = ["assembly", "config", "data", "nn", "runs", "report", "cli"]
# module -> top-level parts of scratchnn_cli it must never load (README.md, "Developing")
NEVER = {
    "scratchnn_cli.config": ["data", "runs", "report", "cli"],
    "scratchnn_cli.data": ["nn", "training", "runs", "report", "cli"],
    "scratchnn_cli.nn": ["config", "data", "training", "runs", "report", "cli", "errors"],
    "scratchnn_cli.training": ["runs", "report", "cli"],
    "scratchnn_cli.assembly": ["runs", "report", "cli"],
    # storage only stores: it is handed finished records and bytes
    "scratchnn_cli.runs": [
        "assembly",
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
    "scratchnn_cli.yaml_limits": ["assembly", "config", "data", "nn", "runs", "report", "cli"],
    "scratchnn_cli.interrupts": ["assembly", "config", "data", "nn", "runs", "report", "cli"],
    "scratchnn_cli.streams": [*BELOW_ALL, "training"],
    "scratchnn_cli.records": [*BELOW_ALL, "training"],
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


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(NEVER))
def test_each_part_never_imports_what_the_readme_says(module: str) -> None:
    parts = loaded_parts(module)
    assert module.split(".")[1] in parts  # the probe itself works
    assert not parts & set(NEVER[module]), sorted(parts & set(NEVER[module]))


def test_every_part_a_rule_names_exists() -> None:
    """A rule naming a part that was renamed would hold for ever, and guard nothing."""
    package = Path(__file__).resolve().parents[1] / "scratchnn_cli"
    for module, parts in NEVER.items():
        for part in [module.split(".")[1], *parts]:
            assert (package / f"{part}.py").is_file() or (package / part).is_dir(), part


@pytest.mark.slow
def test_the_probe_sees_an_import_that_breaks_the_rule() -> None:
    """experiment.py puts everything together: it loads runs and report, which assembly must not."""
    assert {"runs", "report", "assembly"} <= loaded_parts("scratchnn_cli.experiment")


def test_the_package_has_no_import_cycle() -> None:
    """No module imports, even inside a function, a module that imports it back (directly or
    through others): each part can be read, and changed, from the bottom up. The graph comes
    from the source (ast), so lazy imports count too."""
    import ast
    import graphlib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "scratchnn_cli"
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def module_of(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("scratchnn_cli"):
                found = [module_of(f"{node.module}.{a.name}") for a in node.names]
            elif isinstance(node, ast.Import):
                found = [module_of(a.name) for a in node.names]
            else:
                continue
            # a package importing its own modules (its __init__) is how it exports them
            graph[name] |= {m for m in found if m and m != name and not name.startswith(m + ".")}
    graphlib.TopologicalSorter(graph).prepare()  # CycleError names the cycle
