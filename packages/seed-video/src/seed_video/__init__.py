"""Seed video: SeedVR2 (one-step video restoration) and, later, Seedance and AAPT."""

__version__ = "0.1.0"
