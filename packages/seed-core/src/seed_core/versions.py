"""Versions of the software that produced a result, embedded in every output."""

from __future__ import annotations

import platform
import sys
from importlib import metadata


def seed_distributions() -> dict[str, str]:
    """Installed Seed packages (seed-*) and their versions."""
    out = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower().startswith("seed-") and name.lower() != "seed-workspace":
            out[name.lower()] = dist.version
    return dict(sorted(out.items()))


def versions() -> dict[str, str]:
    """python, torch (when imported) and every seed package."""
    out = {"python": platform.python_version(), **seed_distributions()}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = torch.__version__
    return out
