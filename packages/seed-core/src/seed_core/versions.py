"""Versions of the software that produced a result, embedded in every output."""

from __future__ import annotations

import functools
import platform
import sys
from importlib import metadata


@functools.lru_cache(maxsize=1)
def _scan() -> tuple[tuple[str, str], ...]:
    """Installed Seed packages (seed-*) and their versions, scanned once per process."""
    out = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower().startswith("seed-") and name.lower() != "seed-workspace":
            out[name.lower()] = dist.version
    return tuple(sorted(out.items()))


def seed_distributions() -> dict[str, str]:
    """Installed Seed packages (seed-*) and their versions."""
    return dict(_scan())


def versions() -> dict[str, str]:
    """python, torch (when imported) and every seed package."""
    out = {"python": platform.python_version(), **seed_distributions()}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = torch.__version__
    return out
