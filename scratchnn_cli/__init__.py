"""scratchnn: neural networks written from scratch in NumPy, driven by a command-line runner."""

__version__ = "0.2.0.dev0"
