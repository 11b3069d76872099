from __future__ import annotations

import pytest

from seed_core import errors
from seed_core.registry import Table
from seed_core.specs import SamplerSpec


def test_lookup_by_name_and_alias(seed_registry):
    assert seed_registry.samplers.get("dpm++2m").name == "dpmpp-2m"
    assert seed_registry.samplers.get("euler").order == 1
    assert seed_registry.attention_backends.get("torch").name == "sdpa"


@pytest.mark.parametrize(
    ("table", "typo", "error", "hint"),
    [
        ("samplers", "eulr", errors.UnknownSamplerError, "Did you mean 'euler'"),
        ("attention_backends", "spda", errors.UnknownAttentionBackendError, "Did you mean 'sdpa'"),
        ("models", "seedream", errors.UnknownModelError, "None is installed"),
        ("accelerators", "dmd2", errors.UnknownAcceleratorError, "None is installed"),
        ("distill_methods", "adm", errors.UnknownDistillMethodError, "None is installed"),
        ("weight_adapters", "official", errors.UnknownWeightAdapterError, "None is installed"),
    ],
)
def test_unknown_names_have_specific_errors_and_hints(seed_registry, table, typo, error, hint):
    with pytest.raises(error) as info:
        getattr(seed_registry, table).get(typo)
    assert hint in str(info.value)
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)


def test_unrelated_name_lists_what_is_available(seed_registry):
    with pytest.raises(errors.UnknownSamplerError, match="Available: dpm\\+\\+2m, dpmpp-2m"):
        seed_registry.samplers.get("zzzzzz")


def test_duplicates_refused_including_aliases():
    table: Table[SamplerSpec] = Table("sampler", errors.UnknownSamplerError)
    table.add(SamplerSpec("a", object, aliases=("b",)), "p1")
    with pytest.raises(errors.DuplicateRegistrationError, match="'b' is already registered by plugin 'p1'"):
        table.add(SamplerSpec("b", object), "p2")
    assert table.names() == ["a"] and len(table) == 1
