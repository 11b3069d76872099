"""Every hook is documented and exercised: adding a hook without both fails here."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from seed_core import hookimpl, hookspecs
from seed_core.registry import HOOK_TABLES, Registry
from seed_core.specs import (
    AcceleratorKind,
    AcceleratorSpec,
    AttentionBackendSpec,
    DistillMethodSpec,
    ModelSpec,
    RewardModelSpec,
    SamplerSpec,
    WeightAdapterSpec,
)

PLUGIN_GUIDE = Path(__file__).resolve().parents[3] / "docs" / "plugins.md"
HOOKS = sorted(n for n, f in vars(hookspecs).items() if n.startswith("seed_") and inspect.isfunction(f))


def _build(spec, options):  # pragma: no cover - never called
    raise AssertionError


class Everything:
    """A plugin implementing every registration hook once."""

    @hookimpl
    def seed_register_models(self, register):
        register(ModelSpec("hook-model", "test", ("t2i",), _build))

    @hookimpl
    def seed_register_samplers(self, register):
        register(SamplerSpec("hook-sampler", object))

    @hookimpl
    def seed_register_attention_backends(self, register):
        register(AttentionBackendSpec("hook-attn", lambda q, k, v, **kw: q))

    @hookimpl
    def seed_register_accelerators(self, register):
        register(AcceleratorSpec("hook-accel", AcceleratorKind.MEMORY, lambda p, **kw: p))

    @hookimpl
    def seed_register_distill_methods(self, register):
        register(DistillMethodSpec("hook-distill", lambda **kw: None))

    @hookimpl
    def seed_register_weight_adapters(self, register):
        register(WeightAdapterSpec("hook-adapter", lambda keys: False, dict))

    @hookimpl
    def seed_register_reward_models(self, register):
        register(RewardModelSpec("hook-reward", lambda device: None))

    @hookimpl
    def seed_register_commands(self, app):
        @app.command("hook-command")
        def hook_command() -> None:
            typer.echo("hook command ran")


def _table_exercise(hook: str) -> Callable[[Registry], None]:
    attr, _, _ = HOOK_TABLES[hook]
    expected = (
        "hook-"
        + {
            "models": "model",
            "samplers": "sampler",
            "attention_backends": "attn",
            "accelerators": "accel",
            "distill_methods": "distill",
            "weight_adapters": "adapter",
            "reward_models": "reward",
        }[attr]
    )

    def check(registry: Registry) -> None:
        table = getattr(registry, attr)
        assert expected in table
        assert table.owner(expected) == "Everything"

    return check


def _commands_exercise(registry: Registry) -> None:
    app = typer.Typer()

    @app.command("other")
    def other() -> None:  # a second command so typer keeps sub-command dispatch
        pass

    registry.register_commands(app)
    result = CliRunner().invoke(app, ["hook-command"])
    assert result.exit_code == 0, result.output
    assert "hook command ran" in result.output


EXERCISES: dict[str, Callable[[Registry], None]] = {
    **{hook: _table_exercise(hook) for hook in HOOK_TABLES},
    "seed_register_commands": _commands_exercise,
}


def test_every_hook_has_an_exercise():
    assert sorted(EXERCISES) == HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_exercised(hook, seed_registry_factory):
    registry = seed_registry_factory(Everything())
    assert not registry.failed_plugins, registry.failed_plugins
    EXERCISES[hook](registry)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    params = inspect.signature(getattr(hookspecs, hook)).parameters
    assert len(doc.splitlines()[0]) > 20, f"{hook} needs a one-line summary"
    for name in params:
        assert f":param {name}:" in doc, f"{hook} does not document its parameter {name}"
    assert f"`{hook}" in PLUGIN_GUIDE.read_text(), f"{hook} is missing from docs/plugins.md"


def test_hooks_only_take_keyword_registration_arguments():
    for hook in HOOKS:
        params = list(inspect.signature(getattr(hookspecs, hook)).parameters)
        assert params in (["register"], ["app"]), hook
