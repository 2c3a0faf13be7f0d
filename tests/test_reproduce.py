"""reproduce.py: the experiments of configs/reproduce.yaml, started longest first, each said as it
starts and ends."""

from __future__ import annotations

import io
import re
from pathlib import Path

from helpers import (
    SMALL_CONFIG,
)
from rich.console import Console

# --------------------------------------------------------------------------- progress


def test_reproduce_says_when_each_experiment_starts_and_ends(tmp_path: Path) -> None:
    from scratchnn_cli.reproduce import reproduce_all

    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "small.yaml").write_text(SMALL_CONFIG.format(name="small", max_iterations=200))
    (configs / "reproduce.yaml").write_text(
        "experiments:\n"
        "  - {id: 1, title: small one, config: small.yaml, reported: {test: 0.9}, seconds: 1}\n"
        "  - {id: 2, title: no such config, config: missing.yaml, seconds: 0}\n"
    )
    console = Console(width=80, file=io.StringIO())
    out_dir, rows = reproduce_all(configs, tmp_path / "runs", jobs=1, console=console)
    text = console.file.getvalue()
    lines = text.splitlines()
    started = next(i for i, line in enumerate(lines) if "#1 small one: started" in line)
    ended = next(i for i, line in enumerate(lines) if "#1 small one: test 0." in line)
    assert started < ended
    assert re.search(
        r"#1 small one: test 0\.\d{3} \(reported 0\.900\) completed, \d+ s$", lines[ended]
    )
    assert any("#2 no such config: started" in line for line in lines)
    assert max(len(line) for line in lines) <= 80, text
    assert [r.status.split(":")[0] for r in rows] == ["completed", "failed"]
    assert (out_dir / "summary.md").is_file()


# --------------------------------------------------------------------------- start order


def test_reproduce_starts_the_longest_experiments_first() -> None:
    from scratchnn_cli.reproduce import Experiment, read_manifest, start_order

    entries = read_manifest(Path(__file__).parents[1] / "configs" / "reproduce.yaml")
    assert all(e.seconds > 0 for e in entries)  # every one has its measured time
    ids = [e.id for e in start_order(entries)]
    assert ids[:2] == [4, 8]  # circles 3M steps, Fashion 10 classes: side by side on 2 workers
    ties = [Experiment(i, "x", "x.yaml", seconds=s) for i, s in ((1, 5), (2, 0), (3, 5), (4, 9))]
    assert [e.id for e in start_order(ties)] == [4, 1, 3, 2]
