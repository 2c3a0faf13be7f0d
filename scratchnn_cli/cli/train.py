"""``scratchnn train``: train a spec (or ``--resume`` a stopped run) into a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from scratchnn_cli.cli.common import ThreadsOption, err, handle_errors, say
from scratchnn_cli.errors import EXIT_DIVERGED
from scratchnn_cli.interrupts import stop_cleanly_on_signals

if TYPE_CHECKING:
    from scratchnn_cli.runs.writer import RunOutcome


@handle_errors
def train(
    config: Annotated[
        Path | None,
        typer.Argument(
            metavar="CONFIG", help="The experiment spec, e.g. configs/circles_shallow.yaml."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Override a key of the spec: --set train.lr=0.01 (repeatable).",
        ),
    ] = None,
    runs_dir: Annotated[
        Path,
        typer.Option(
            metavar="PATH", help="Where run folders are created (not used with --resume)."
        ),
    ] = Path("runs"),
    resume: Annotated[
        Path | None,
        typer.Option(
            metavar="RUN_DIR",
            help="Continue this interrupted, diverged or failed run (or one whose process was "
            "killed) from its last checkpoint, in place, instead of CONFIG; --set may change "
            "train.* keys (not the optimizer) from there on.",
        ),
    ] = None,
    threads: ThreadsOption = None,
) -> None:
    """Train the network a YAML spec describes and write a run folder under RUNS_DIR.

    Ctrl-C (or SIGTERM) stops cleanly: the folder is marked interrupted with its history, the
    latest weights and a checkpoint, ready for --resume.
    """
    from scratchnn_cli.config import load_config
    from scratchnn_cli.errors import UserInputError
    from scratchnn_cli.experiment import resume_experiment, run_experiment

    if (config is None) == (resume is None):
        raise UserInputError("give either CONFIG or --resume RUN_DIR (not both)")
    from scratchnn_cli.nn.threads import threads as layer_threads

    stop_cleanly_on_signals(then_ignore=True)  # interrupts.py: the policies, in one place
    with layer_threads(threads):
        if resume is not None:
            outcome = resume_experiment(resume, set_ or [], console=err)
        else:
            spec = load_config(config, set_ or [])
            outcome = run_experiment(spec, runs_dir, console=err, config_path=config)
    _print_outcome(outcome)
    if outcome.status == "diverged":
        raise typer.Exit(EXIT_DIVERGED)


def _print_outcome(outcome: RunOutcome) -> None:
    """Why training stopped, the accuracy per split, the most important finding of
    ``scratchnn diagnose`` when there is one, then the run folder (the last line)."""
    say(f"stopped: {outcome.result.stop_reason}")
    for split, m in outcome.metrics.items():
        say(f"{split:>5} accuracy: {m.accuracy:.4f}  (n = {m.n})")
    finding = _first_finding(outcome.run_dir)
    if finding:
        say(f"diagnose: {finding} (scratchnn diagnose {outcome.run_dir})")
    say(str(outcome.run_dir))


def _first_finding(run_dir: Path) -> str | None:
    """The most important finding's line, or None when nothing is wrong (or the run's files
    cannot say)."""
    from scratchnn_cli.diagnose import NOTHING_WRONG, diagnose, load_evidence
    from scratchnn_cli.errors import ScratchnnError

    try:
        first = diagnose(load_evidence(run_dir))[0]
    except ScratchnnError:
        return None
    return None if first is NOTHING_WRONG else first.line()
