"""Seed distillation methods, recipes and trainer (see README.md)."""
