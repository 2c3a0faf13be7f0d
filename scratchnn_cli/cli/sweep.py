"""``scratchnn sweep``: train a grid of hyper-parameters (cross-validated), refit the best."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from scratchnn_cli.cli.common import err, handle_errors, say
from scratchnn_cli.errors import EXIT_DIVERGED

SWEEP_EXIT_HELP = (
    "Exit codes: 0 every point (and the refit) completed; 3 the sweep ran to its end but some "
    "point, fold or the refit diverged, failed or was invalid (results.csv says which); 2 bad "
    "input (nothing trained); 130 interrupted (finish with --resume); 1 internal error."
)


@handle_errors
def sweep(
    config: Annotated[
        Path | None,
        typer.Argument(
            metavar="CONFIG", help="The experiment spec; its optional sweep: key holds a grid."
        ),
    ] = None,
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            metavar="KEY=V1,V2",
            help="A key and its values, read as YAML: --grid train.lr=0.1,0.01 "
            "--grid model.struct=[5],[10,5] (repeatable; wins over sweep.grid).",
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Override a key of the base spec: --set train.lr=0.01.",
        ),
    ] = None,
    random: Annotated[
        int | None,
        typer.Option(
            min=1, metavar="N", help="Train N points drawn from the grid (seeded), not all."
        ),
    ] = None,
    cv: Annotated[
        int | None,
        typer.Option(
            min=2,
            metavar="K",
            help="K-fold stratified CV of train + val (default: train, scored on val).",
        ),
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option(
            metavar="S1,S2",
            help="Train every point and fold with each of these seeds (initial weights, sample "
            "order; the folds stay the same) and score the mean: --seeds 0,1,2.",
        ),
    ] = None,
    jobs: Annotated[
        int,
        typer.Option(metavar="N", help="Sub-runs trained at once (processes; -1: all cores)."),
    ] = 1,
    refit: Annotated[
        bool,
        typer.Option(help="Train best.yaml on train + val and score it once on test."),
    ] = True,
    backend: Annotated[
        Literal["local", "dask"],
        typer.Option(help="local: joblib processes; dask: a Dask cluster (pip install '.[dask]')."),
    ] = "local",
    scheduler: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="Dask scheduler address, tcp://HOST:PORT (default with --backend dask: a "
            "local cluster of --jobs workers).",
        ),
    ] = None,
    runs_dir: Annotated[
        Path,
        typer.Option(metavar="PATH", help=r"Where the sweep-\<name\>-\<timestamp\> folder goes."),
    ] = Path("runs"),
    resume: Annotated[
        Path | None,
        typer.Option(
            metavar="SWEEP_DIR", help="Finish this interrupted sweep folder instead of CONFIG."
        ),
    ] = None,
) -> None:
    """Train every point of a grid of spec keys (each on every CV fold, with every seed of
    --seeds), write results.csv, summary.md, sweep.png and best.yaml, then refit the best point
    and score it on test.

    The test split is never used before the refit. Failed or diverged points are reported and
    the sweep goes on. Ctrl-C stops it; --resume SWEEP_DIR finishes it.
    """
    from scratchnn_cli.errors import UserInputError
    from scratchnn_cli.interrupts import stop_cleanly_on_signals
    from scratchnn_cli.sweep import parse_seeds_option, plan_sweep, run_sweep
    from scratchnn_cli.sweep.files import estimate_name, score_text

    if (config is None) == (resume is None):
        raise UserInputError("give either CONFIG or --resume SWEEP_DIR (not both)")
    if resume is not None and (grid or set_ or random or cv or seeds):
        raise UserInputError("--resume SWEEP_DIR takes its grid from its sweep.yaml")
    seed_list = parse_seeds_option(seeds)
    stop_cleanly_on_signals()  # Ctrl-C / SIGTERM: the sub-runs stop cleanly, --resume goes on
    plan = (
        None
        if config is None
        else plan_sweep(config, set_ or [], grid or [], random, cv, seed_list)
    )
    outcome = run_sweep(
        plan,
        runs_dir,
        resume=resume,
        jobs=jobs,
        refit=refit,
        backend=backend,
        scheduler=scheduler,
        console=err,
    )
    best, plan = outcome.best, outcome.plan
    if best is None:
        say("no point completed")
    else:
        params = " ".join(f"{k}={best.params[k]}" for k in plan.grid)
        say(f"best: point {best.point} {params}: {estimate_name(plan)} {score_text(plan, best)}")
    refit_run = outcome.refit
    if best is not None and refit_run is not None and refit_run.test_accuracy is not None:
        say(
            f"refit of best.yaml: test accuracy {refit_run.test_accuracy:.4f} "
            f"(n = {refit_run.n_test}), {estimate_name(plan)} "
            f"{best.mean_val_accuracy:.4f}"
        )
    for line in outcome.failed:
        say(f"not completed: {line}")
    say(str(outcome.sweep_dir))
    if outcome.failed:
        raise typer.Exit(EXIT_DIVERGED)
