"""What the caller of ``train`` hears while it runs: a callback per epoch and per checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from scratchnn_cli.records import EpochRecord, Snapshot

EpochCallback = Callable[[EpochRecord], None]
SnapshotCallback = Callable[[Snapshot], None]


@dataclass
class Hooks:
    """What the caller wants to hear while training runs.

    ``on_epoch`` gets every EpochRecord; ``on_checkpoint`` gets a Snapshot every
    ``checkpoint_every`` epochs (or, when that is None, every ``checkpoint_seconds``), at the
    end, and on Ctrl-C (the last finished epoch's, before the KeyboardInterrupt goes on)."""

    on_epoch: EpochCallback | None = None
    on_checkpoint: SnapshotCallback | None = None
    checkpoint_every: int | None = None
    checkpoint_seconds: float = 30.0
