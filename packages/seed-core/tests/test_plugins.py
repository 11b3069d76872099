from __future__ import annotations

from seed_core.registry import Registry

GOOD = """
from seed_core import hookimpl
from seed_core.specs import ModelSpec

@hookimpl
def seed_register_models(register):
    register(ModelSpec("good-model", "test", ("t2i",), lambda spec, options: None))
"""

BROKEN_IMPORT = """
raise ImportError("this plugin needs a package that is not installed")
"""

BROKEN_HOOK = """
from seed_core import hookimpl

@hookimpl
def seed_register_models(register):
    raise RuntimeError("hook exploded")
"""

DUPLICATE = """
from seed_core import hookimpl
from seed_core.specs import SamplerSpec

@hookimpl
def seed_register_samplers(register):
    register(SamplerSpec("euler", object))
"""


def _status(registry: Registry) -> dict[str, tuple[str, str | None]]:
    return {p.name: (p.status, p.error) for p in registry.plugins}


def test_entry_point_plugins_are_discovered(seed_entry_point_plugin):
    seed_entry_point_plugin("seedtest-good", GOOD)
    registry = Registry.from_plugins(entry_points=True, env={})
    assert "good-model" in registry.models
    assert registry.models.owner("good-model") == "seedtest-good"
    record = next(p for p in registry.plugins if p.name == "seedtest-good")
    assert (record.distribution, record.version, record.status) == ("seedtest-good", "0.0.1", "loaded")


def test_broken_plugin_is_recorded_and_others_still_load(seed_entry_point_plugin):
    seed_entry_point_plugin("seedtest-good", GOOD)
    seed_entry_point_plugin("seedtest-broken", BROKEN_IMPORT)
    seed_entry_point_plugin("seedtest-badhook", BROKEN_HOOK)
    registry = Registry.from_plugins(entry_points=True, env={})
    status = _status(registry)
    assert status["seedtest-broken"] == (
        "failed",
        "ImportError: this plugin needs a package that is not installed",
    )
    assert status["seedtest-badhook"][0] == "failed"
    assert "RuntimeError: hook exploded" in status["seedtest-badhook"][1]
    assert "good-model" in registry.models
    assert "euler" in registry.samplers


def test_duplicate_name_is_a_plugin_error_not_a_crash(seed_entry_point_plugin):
    seed_entry_point_plugin("seedtest-dup", DUPLICATE)
    registry = Registry.from_plugins(entry_points=True, env={})
    status, error = _status(registry)["seedtest-dup"]
    assert status == "failed"
    assert "sampler 'euler' is already registered by plugin 'seed-core'" in error


def test_disable_all(seed_entry_point_plugin):
    seed_entry_point_plugin("seedtest-good", GOOD)
    for value in ("1", "all", "*"):
        registry = Registry.from_plugins(entry_points=True, env={"SEED_DISABLE_PLUGINS": value})
        assert "good-model" not in registry.models
        assert _status(registry)["seedtest-good"] == ("disabled", "disabled by SEED_DISABLE_PLUGINS")
        assert "euler" in registry.samplers  # seed-core's own parts stay


def test_disable_by_name_and_allow_list(seed_entry_point_plugin):
    seed_entry_point_plugin("seedtest-good", GOOD)
    seed_entry_point_plugin("seedtest-broken", BROKEN_IMPORT)
    registry = Registry.from_plugins(entry_points=True, env={"SEED_DISABLE_PLUGINS": "seedtest-broken"})
    assert _status(registry)["seedtest-broken"][0] == "disabled"
    assert "good-model" in registry.models

    registry = Registry.from_plugins(entry_points=True, env={"SEED_LOAD_PLUGINS": "seedtest-good"})
    status = _status(registry)
    assert status["seedtest-good"][0] == "loaded"
    assert status["seedtest-broken"] == ("disabled", "not listed in SEED_LOAD_PLUGINS")

    registry = Registry.from_plugins(entry_points=True, env={"SEED_LOAD_PLUGINS": ""})
    assert "good-model" not in registry.models

    both = {"SEED_LOAD_PLUGINS": "seedtest-good", "SEED_DISABLE_PLUGINS": "seedtest-good"}
    assert _status(Registry.from_plugins(entry_points=True, env=both))["seedtest-good"][0] == "disabled"


def test_a_name_in_the_lists_that_no_plugin_has_is_reported(seed_entry_point_plugin):
    seed_entry_point_plugin("seedtest-good", GOOD)
    for var in ("SEED_LOAD_PLUGINS", "SEED_DISABLE_PLUGINS"):
        registry = Registry.from_plugins(entry_points=True, env={var: "seedtest-good, seedtest-typo"})
        status = _status(registry)
        assert status["seedtest-typo"][0] == "failed"
        assert f"{var} names 'seedtest-typo', which no installed plugin has" in status["seedtest-typo"][1]
        assert "seedtest-good" in status["seedtest-typo"][1]  # the names that would have worked
    # names that match (a plugin's or its distribution's) and the 'all' forms add no record
    registry = Registry.from_plugins(entry_points=True, env={"SEED_LOAD_PLUGINS": "Seedtest_Good"})
    assert [r.name for r in registry.failed_plugins] == []
    registry = Registry.from_plugins(entry_points=True, env={"SEED_DISABLE_PLUGINS": "all"})
    assert [r.name for r in registry.failed_plugins] == []


def test_fixture_registry_is_isolated(seed_registry):
    from seed_core.registry import get_registry

    assert get_registry() is seed_registry
    assert [p.name for p in seed_registry.plugins] == ["seed-core"]


PARTLY_BROKEN = """
from seed_core import hookimpl
from seed_core.specs import ModelSpec

@hookimpl
def seed_register_models(register):
    register(ModelSpec("half-registered", "test", ("t2i",), lambda spec, options: None))
    raise RuntimeError("failed after one register call")
"""

FUTURE_PROOF = """
from seed_core import hookimpl
from seed_core.specs import ModelSpec

@hookimpl
def seed_register_models():  # takes none of the hook's arguments: pluggy allows that
    pass
"""


def test_a_hook_that_raises_registers_nothing(seed_entry_point_plugin):
    seed_entry_point_plugin("seedtest-partly", PARTLY_BROKEN)
    registry = Registry.from_plugins(entry_points=True, env={})
    assert "half-registered" not in registry.models
    assert _status(registry)["seedtest-partly"][0] == "failed"


def test_hook_implementations_may_take_fewer_arguments(seed_entry_point_plugin):
    seed_entry_point_plugin("seedtest-future", FUTURE_PROOF)
    registry = Registry.from_plugins(entry_points=True, env={})
    assert _status(registry)["seedtest-future"] == ("loaded", None)


def test_names_in_env_vars_are_normalised(seed_entry_point_plugin):
    seed_entry_point_plugin("seedtest-good", GOOD)
    for spelling in ("SEEDTEST_GOOD", "Seedtest.Good", " seedtest-good "):
        registry = Registry.from_plugins(entry_points=True, env={"SEED_DISABLE_PLUGINS": spelling})
        assert "good-model" not in registry.models, spelling
