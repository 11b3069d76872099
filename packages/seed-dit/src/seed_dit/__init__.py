"""Seedream / SeedEdit backbone."""

__version__ = "0.1.0"
