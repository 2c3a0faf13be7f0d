"""The training loop (``loop.train``), its stopping rules and its snapshots."""
