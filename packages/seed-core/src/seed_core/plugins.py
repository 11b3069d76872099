"""Finding and loading plugins from the `seed` entry-point group.

A plugin that fails to import (or whose hook raises) is recorded with its error and skipped; it never
takes the CLI down. Two environment variables control loading:

- ``SEED_DISABLE_PLUGINS``: ``1`` / ``all`` / ``*`` skips every entry-point plugin; otherwise a
  comma-separated list of plugin (entry-point) or distribution names to skip.
- ``SEED_LOAD_PLUGINS``: a comma-separated allow-list; when set, only these plugins load (an empty value
  loads none). A name in both lists is skipped.

seed-core's own parts (the `sdpa` / `math` attention backends, the built-in samplers) are registered by
the host itself and are always present.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata

import pluggy

from seed_core import hookspecs

ENTRY_POINT_GROUP = "seed"
BUILTIN_PLUGIN = "seed-core"


@dataclass
class PluginRecord:
    """What `seed plugins` shows for one plugin."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    status: str = "loaded"  # loaded | failed | disabled | builtin
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("loaded", "builtin")


def normalize(name: str) -> str:
    """PEP 503 form, so Seed_Plugin.Example and seed-plugin-example name the same plugin."""
    return re.sub(r"[-_.]+", "-", name).lower().strip()


def _names(value: str) -> set[str]:
    return {normalize(n) for n in value.split(",") if n.strip()}


def _skip_reason(ep: metadata.EntryPoint, dist_name: str | None, env: Mapping[str, str]) -> str | None:
    """Why the environment says not to load this entry point, or None to load it."""
    ids = {normalize(ep.name)} | ({normalize(dist_name)} if dist_name else set())
    disabled = env.get("SEED_DISABLE_PLUGINS")
    if disabled is not None:
        if disabled.strip().lower() in ("1", "true", "yes", "all", "*"):
            return "disabled by SEED_DISABLE_PLUGINS"
        if ids & _names(disabled):
            return "disabled by SEED_DISABLE_PLUGINS"
    allowed = env.get("SEED_LOAD_PLUGINS")
    if allowed is not None and not ids & _names(allowed):
        return "not listed in SEED_LOAD_PLUGINS"
    return None


def _error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def new_plugin_manager() -> pluggy.PluginManager:
    """A plugin manager with the hook specs and seed-core's built-in parts, and no entry-point plugins."""
    from seed_core import builtin

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(builtin, name=BUILTIN_PLUGIN)
    return pm


def load_entry_point_plugins(
    pm: pluggy.PluginManager, env: Mapping[str, str] | None = None
) -> list[PluginRecord]:
    """Import every plugin of the `seed` entry-point group into `pm`; return one record per plugin."""
    env = os.environ if env is None else env
    records: list[PluginRecord] = []
    seen: set[str] = set()
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        record = PluginRecord(
            ep.name, ep.value, dist_name, dist.version if dist is not None else None, "loaded"
        )
        records.append(record)
        if ep.name in seen:  # the same distribution can be visible twice on sys.path
            record.status, record.error = "disabled", "duplicate entry point name"
            continue
        seen.add(ep.name)
        reason = _skip_reason(ep, dist_name, env)
        if reason:
            record.status, record.error = "disabled", reason
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # a broken plugin must never break the host
            record.status, record.error = "failed", _error_line(exc)
    return records + _unmatched(records, env)


def _unmatched(records: list[PluginRecord], env: Mapping[str, str]) -> list[PluginRecord]:
    """A record for each name in SEED_LOAD_PLUGINS / SEED_DISABLE_PLUGINS that no installed plugin has:
    a typo there would otherwise load nothing (or skip nothing) without a word."""
    known = {normalize(n) for r in records for n in (r.name, r.distribution) if n}
    installed = ", ".join(sorted({r.name for r in records})) or "none"
    out = []
    for var in ("SEED_LOAD_PLUGINS", "SEED_DISABLE_PLUGINS"):
        value = env.get(var)
        if value is None or value.strip().lower() in ("1", "true", "yes", "all", "*"):
            continue
        for name in sorted(_names(value) - known):
            error = f"{var} names '{name}', which no installed plugin has (installed: {installed})"
            out.append(PluginRecord(name, "", status="failed", error=error))
    return out


def builtin_record() -> PluginRecord:
    from seed_core import __version__

    return PluginRecord(BUILTIN_PLUGIN, "seed_core.builtin", "seed-core", __version__, "builtin")
