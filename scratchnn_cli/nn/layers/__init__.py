"""Layers: each has ``forward(A_prev, training) -> A`` and ``backward(dA) -> dA_prev``."""
