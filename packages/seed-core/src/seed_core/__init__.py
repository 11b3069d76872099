"""Seed core: the plugin contract, registries, configs, weights IO, attention dispatch and samplers.

Importing `seed_core` is cheap (no torch); the heavy modules load on first use. Attention lives in
`seed_core.attention.attention`, samplers in `seed_core.samplers`, weights IO in `seed_core.weights`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from seed_core.hookspecs import hookimpl, hookspec

__version__ = "0.1.0"
__all__ = ["__version__", "get_registry", "hookimpl", "hookspec", "load"]

if TYPE_CHECKING:
    from seed_core.pipeline import load
    from seed_core.registry import get_registry

_LAZY = {
    "load": ("seed_core.pipeline", "load"),
    "get_registry": ("seed_core.registry", "get_registry"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'seed_core' has no attribute {name!r}")
