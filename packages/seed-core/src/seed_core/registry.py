"""Registries: the parts every plugin registered, looked up by name or alias.

`get_registry()` returns the process-wide registry, built on first use from the entry-point plugins.
Tests and embedding applications can build their own with `Registry.from_plugins(...)` and install it with
`use_registry(...)`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

import pluggy

from seed_core import errors
from seed_core.plugins import (
    PluginRecord,
    builtin_record,
    load_entry_point_plugins,
    new_plugin_manager,
)
from seed_core.specs import (
    AcceleratorSpec,
    AttentionBackendSpec,
    DistillMethodSpec,
    ModelSpec,
    RewardModelSpec,
    SamplerSpec,
    WeightAdapterSpec,
)

T = TypeVar("T")


class Table(Generic[T]):
    """Specs of one kind, keyed by name, with aliases; unknown names raise `error_type` with a hint."""

    def __init__(self, kind: str, error_type: type[errors.UnknownNameError]) -> None:
        self.kind = kind
        self.error_type = error_type
        self._specs: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._owner: dict[str, str] = {}

    def check(self, spec: T) -> None:
        """Raise `DuplicateRegistrationError` if the spec's name or an alias is taken."""
        for key in (spec.name, *getattr(spec, "aliases", ())):  # type: ignore[attr-defined]
            if key in self._specs or key in self._aliases:
                holder = self._owner[self._aliases.get(key, key)]
                raise errors.DuplicateRegistrationError(
                    f"{self.kind} '{key}' is already registered by plugin '{holder}'"
                )

    def add(self, spec: T, plugin: str) -> None:
        self.check(spec)
        name: str = spec.name  # type: ignore[attr-defined]
        aliases: tuple[str, ...] = getattr(spec, "aliases", ())
        self._specs[name] = spec
        self._owner[name] = plugin
        for alias in aliases:
            self._aliases[alias] = name

    def get(self, name: str) -> T:
        key = self._aliases.get(name, name)
        try:
            return self._specs[key]
        except KeyError:
            raise self.error_type(name, [*self._specs, *self._aliases]) from None

    def owner(self, name: str) -> str:
        """The plugin that registered `name`."""
        return self._owner[self._aliases.get(name, name)]

    def names(self) -> list[str]:
        return sorted(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs or name in self._aliases

    def __iter__(self) -> Iterator[T]:
        return iter(self._specs[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._specs)


# hook name -> (attribute of Registry, kind shown in messages, error type)
HOOK_TABLES: dict[str, tuple[str, str, type[errors.UnknownNameError]]] = {
    "seed_register_models": ("models", "model", errors.UnknownModelError),
    "seed_register_samplers": ("samplers", "sampler", errors.UnknownSamplerError),
    "seed_register_attention_backends": (
        "attention_backends",
        "attention backend",
        errors.UnknownAttentionBackendError,
    ),
    "seed_register_accelerators": ("accelerators", "accelerator", errors.UnknownAcceleratorError),
    "seed_register_distill_methods": (
        "distill_methods",
        "distillation method",
        errors.UnknownDistillMethodError,
    ),
    "seed_register_weight_adapters": ("weight_adapters", "weight adapter", errors.UnknownWeightAdapterError),
    "seed_register_reward_models": ("reward_models", "reward model", errors.UnknownRewardModelError),
}

_SPEC_TYPES: dict[str, type] = {
    "models": ModelSpec,
    "samplers": SamplerSpec,
    "attention_backends": AttentionBackendSpec,
    "accelerators": AcceleratorSpec,
    "distill_methods": DistillMethodSpec,
    "weight_adapters": WeightAdapterSpec,
    "reward_models": RewardModelSpec,
}


class Registry:
    """Every registered part, one `Table` per kind, plus the record of each plugin."""

    models: Table[ModelSpec]
    samplers: Table[SamplerSpec]
    attention_backends: Table[AttentionBackendSpec]
    accelerators: Table[AcceleratorSpec]
    distill_methods: Table[DistillMethodSpec]
    weight_adapters: Table[WeightAdapterSpec]
    reward_models: Table[RewardModelSpec]

    def __init__(self, pm: pluggy.PluginManager, plugins: list[PluginRecord] | None = None) -> None:
        self.pm = pm
        self.plugins: list[PluginRecord] = [builtin_record(), *(plugins or [])]
        for attr, kind, error_type in HOOK_TABLES.values():
            setattr(self, attr, Table(kind, error_type))
        for hook, (attr, _, _) in HOOK_TABLES.items():
            self._collect(hook, getattr(self, attr), _SPEC_TYPES[attr])

    @classmethod
    def from_plugins(
        cls, *plugins: object, entry_points: bool = False, env: Mapping[str, str] | None = None
    ) -> Registry:
        """A registry from the given plugin objects (modules or instances with hookimpls), plus the
        entry-point plugins when `entry_points` is true."""
        pm = new_plugin_manager()
        records = load_entry_point_plugins(pm, env) if entry_points else []
        for plugin in plugins:
            name = getattr(plugin, "__name__", None) or type(plugin).__name__
            pm.register(plugin, name=name)
            records.append(PluginRecord(name, name, status="loaded"))
        return cls(pm, records)

    def _record(self, plugin: str) -> PluginRecord:
        for record in self.plugins:
            if record.name == plugin:
                return record
        record = PluginRecord(plugin, plugin)
        self.plugins.append(record)
        return record

    def _fail(self, plugin: str, message: str) -> None:
        record = self._record(plugin)
        record.status = "failed"
        record.error = message if record.error is None else f"{record.error}; {message}"

    def _collect(self, hook: str, table: Table[Any], spec_type: type) -> None:
        # Call each plugin's implementation on its own so that one raising does not hide the others, and
        # pass only the arguments it declares (pluggy's rule), so hooks can grow new keyword arguments.
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            plugin = impl.plugin_name
            staged: list[Any] = []

            def register(spec: Any, _staged: list[Any] = staged) -> None:
                if not isinstance(spec, spec_type):
                    raise TypeError(f"{hook} expects {spec_type.__name__}, got {type(spec).__name__}")
                _staged.append(spec)

            try:
                impl.function(**{name: register for name in impl.argnames if name == "register"})
                for spec in staged:  # all or nothing: a hook that raised registers none of its parts
                    table.check(spec)
                for spec in staged:
                    table.add(spec, plugin)
            except errors.DuplicateRegistrationError as exc:
                self._fail(plugin, str(exc))
            except Exception as exc:
                self._fail(plugin, f"{hook} raised {type(exc).__name__}: {exc}")

    def register_commands(self, app: Any) -> None:
        """Let every plugin add its sub-commands to the typer `app`."""
        import inspect

        for impl in self.pm.hook.seed_register_commands.get_hookimpls():
            commands = getattr(app, "registered_commands", [])
            before = len(commands)
            try:
                impl.function(**{name: app for name in impl.argnames if name == "app"})
                # typer reads a command's signature only when the CLI runs: check it now, so a broken
                # command is this plugin's recorded error instead of a crash of every `seed` command
                for info in commands[before:]:
                    inspect.signature(info.callback, eval_str=True)
            except Exception as exc:
                del commands[before:]
                self._fail(impl.plugin_name, f"seed_register_commands raised {type(exc).__name__}: {exc}")

    @property
    def failed_plugins(self) -> list[PluginRecord]:
        return [p for p in self.plugins if p.status == "failed"]


_lock = threading.RLock()  # re-entrant: a plugin may look something up while loading
_current: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loading the entry-point plugins on first use."""
    global _current
    with _lock:
        if _current is None:
            pm = new_plugin_manager()
            _current = Registry(pm, load_entry_point_plugins(pm))
        return _current


def set_registry(registry: Registry | None) -> None:
    """Install `registry` as the process-wide one (None: rebuild from entry points on next use)."""
    global _current
    with _lock:
        _current = registry


@contextlib.contextmanager
def use_registry(registry: Registry) -> Iterator[Registry]:
    """Temporarily make `registry` the process-wide one."""
    previous = _current
    set_registry(registry)
    try:
        yield registry
    finally:
        set_registry(previous)
