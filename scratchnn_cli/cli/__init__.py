"""The ``scratchnn`` command line (``app``): one module per command, wired in ``app.py``."""

from scratchnn_cli.cli.app import app

__all__ = ["app"]
