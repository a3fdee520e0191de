"""Numpy window store of node and container usage series."""
