"""Training: the loop (``loop.train``), its stopping rules (``stopping``), and what it reports
and resumes from (``snapshot``). It knows no command line and writes no files."""

from scratchnn_cli.training.loop import train
from scratchnn_cli.training.snapshot import EpochRecord, Hooks, Snapshot, TrainResult

__all__ = ["EpochRecord", "Hooks", "Snapshot", "TrainResult", "train"]
