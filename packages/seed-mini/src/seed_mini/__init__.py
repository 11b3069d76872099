"""seed-mini: the shapes world and the mini models trained on it."""

__version__ = "0.1.0"
