"""``scratchnn summary``: the layers of a spec's network, as Keras' ``model.summary()``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scratchnn_cli.cli.common import handle_errors, out, say


@handle_errors
def summary(
    config: Annotated[
        Path, typer.Argument(metavar="CONFIG", help="The experiment spec whose network is shown.")
    ],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="KEY=VALUE", help="Override a key of the spec (repeatable)."),
    ] = None,
) -> None:
    """Show the network a spec describes: per layer its output shape and parameter count.

    Loads the spec's data (its width and classes size the input and output layers) and builds
    the network, output layer included; trains and writes nothing. Says which engine would train
    it (train.engine). Refuses (exit 2) a network too large to train in this machine's memory,
    and train.engine: compiled for a network it cannot run, as train does.
    """
    from scratchnn_cli.assembly import summarize_network
    from scratchnn_cli.config import load_config
    from scratchnn_cli.report.tables import summary_table

    spec = load_config(config, set_ or [])
    shown = summarize_network(spec)
    out.print(summary_table(shown.net, spec.name or ""))
    say(f"total: {shown.net.theta.size:,} parameters ({shown.net.loss.name} output)")
    say(f"engine: {shown.engine.engine} ({shown.engine.why})")
