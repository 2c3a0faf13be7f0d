"""``scratchnn summary``: the layers of a spec's network, as Keras' ``model.summary()``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from scratchnn_cli.cli.app import handle_errors, out, say

if TYPE_CHECKING:
    from scratchnn_cli.nn.network import Network


@handle_errors
def summary(
    config: Annotated[Path, typer.Argument(help="The experiment spec whose network is shown.")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a key of the spec (repeatable).")
    ] = None,
) -> None:
    """Show the network a spec describes: per layer its output shape and parameter count.

    Loads the spec's data (its width and classes size the input and output layers) and builds
    the network, output layer included; trains and writes nothing. Refuses (exit 2) a network
    too large to train in this machine's memory, as train does.
    """
    from scratchnn_cli.config import load_config
    from scratchnn_cli.data import load_dataset
    from scratchnn_cli.experiment import build_network, check_memory

    spec = load_config(config, set_ or [])
    dataset = load_dataset(spec.data, spec.seed)
    check_memory(spec, dataset)
    net = build_network(spec, dataset)
    out.print(_summary_table(net, f"{spec.name}: {_shape(net.input_shape)} inputs"))
    say(f"total: {net.theta.size:,} parameters ({net.loss.name} output)")


def _summary_table(net: Network, title: str) -> Table:
    """One row per layer of ``net``: index, description, output shape, parameter count."""
    table = Table(title=title)
    for column in ("#", "layer", "output shape", "params"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for row in net.summary():
        table.add_row(str(row.index), row.layer, _shape(row.output_shape), f"{row.params:,}")
    return table


def _shape(shape: tuple[int, ...]) -> str:
    """One sample's shape as text: ``5``, or ``28x28`` for images."""
    return "x".join(map(str, shape))
