"""README.md's Python example runs as written and trains: its printed costs fall and its
accuracy is the one the README states."""

from __future__ import annotations

import contextlib
import io
import re

from helpers import ROOT


def readme_block(after_heading: str) -> str:
    """The first ```python block below the heading ``after_heading`` in README.md."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(f"\n## {after_heading}\n", 1)[1]
    return section.split("```python\n", 1)[1].split("\n```", 1)[0]


def test_training_by_hand_runs_as_written_and_learns() -> None:
    code = readme_block("From Python: training by hand")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    costs = re.findall(r"step \d+: J = ([0-9.]+)", printed.getvalue())
    shown = re.search(r'J = \{J:\.4f\}"\)  # ([0-9., ]+)\n', code)
    assert shown is not None and costs == shown.group(1).split(", ")  # what the README says
    assert [float(c) for c in costs] == sorted(map(float, costs), reverse=True)  # falling
    accuracy = re.search(r"# ([0-9.]+)\n", code.split('print("accuracy:"', 1)[1])
    assert accuracy is not None and f"accuracy: {accuracy.group(1)}\n" in printed.getvalue()
    assert "layer='dense(8)'" in printed.getvalue() and "params=9" in printed.getvalue()
