"""Training: the loop (``loop.train``), its stopping rules (``stopping``) and the callbacks it
calls (``hooks``). It fills the records of ``scratchnn_cli.records``; it knows no command line
and writes no files."""

from scratchnn_cli.records import EpochRecord, Snapshot, TrainResult
from scratchnn_cli.training.hooks import Hooks
from scratchnn_cli.training.loop import train

__all__ = ["EpochRecord", "Hooks", "Snapshot", "TrainResult", "train"]
