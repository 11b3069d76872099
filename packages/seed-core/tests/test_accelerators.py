from __future__ import annotations

import pytest

from seed_core.errors import AcceleratorError, UnknownAcceleratorError
from seed_core.pipeline import AcceleratorRequest, Pipeline, apply_accelerators, plan_accelerators
from seed_core.specs import AcceleratorKind, AcceleratorOption, AcceleratorSpec, ModelSpec

MODEL = ModelSpec("m", "dit", ("t2i",), lambda spec, options: Pipeline(spec))
VIDEO = ModelSpec("v", "video", ("t2v",), lambda spec, options: Pipeline(spec))


def _apply(tag):
    def apply(pipeline, **options):
        pipeline.log = [*getattr(pipeline, "log", []), (tag, options)]
        return pipeline

    return apply


class Plugin:
    from seed_core import hookimpl

    @hookimpl
    def seed_register_accelerators(self, register):
        register(
            AcceleratorSpec(
                "student",
                AcceleratorKind.STEPS,
                _apply("student"),
                options=(AcceleratorOption("steps", int, 4),),
            )
        )
        register(AcceleratorSpec("student2", AcceleratorKind.STEPS, _apply("student2")))
        register(
            AcceleratorSpec(
                "int8",
                AcceleratorKind.WEIGHTS,
                _apply("int8"),
                options=(AcceleratorOption("per_channel", bool, True),),
            )
        )
        register(
            AcceleratorSpec(
                "sparse",
                AcceleratorKind.ATTENTION,
                _apply("sparse"),
                applies_to=lambda m: None if m.family == "dit" else "needs a DiT backbone",
                conflicts={"offload": "offloading breaks the sparse plan's device layout"},
            )
        )
        register(AcceleratorSpec("offload", AcceleratorKind.MEMORY, _apply("offload")))
        register(AcceleratorSpec("tiling", AcceleratorKind.MEMORY, _apply("tiling")))


def test_parse_request():
    assert AcceleratorRequest.parse("int8") == AcceleratorRequest("int8", {})
    assert AcceleratorRequest.parse("paro: density=0.5 ,bits=8") == AcceleratorRequest(
        "paro", {"density": "0.5", "bits": "8"}
    )
    for bad in (":x=1", "paro:density", "paro:=3"):
        with pytest.raises(AcceleratorError):
            AcceleratorRequest.parse(bad)


def test_applied_in_kind_order_with_options(seed_registry_factory):
    seed_registry_factory(Plugin())
    plan = plan_accelerators(["tiling", "sparse", "int8:per_channel=no", "student:steps=2"], MODEL)
    assert [s.name for s, _ in plan] == ["student", "int8", "sparse", "tiling"]
    pipeline = apply_accelerators(Pipeline(MODEL), plan)
    assert pipeline.log == [
        ("student", {"steps": 2}),
        ("int8", {"per_channel": False}),
        ("sparse", {}),
        ("tiling", {}),
    ]
    assert [a.label() for a in pipeline.accelerators] == [
        "student:steps=2",
        "int8:per_channel=False",
        "sparse",
        "tiling",
    ]


def test_options_an_accelerator_chose_are_recorded(seed_registry_factory):
    """What an accelerator picks for an option left out (`Pipeline.chosen_options`) joins its record;
    an option the user gave is kept as given, and the next accelerator starts with nothing chosen."""

    def choose(pipeline, **options):
        pipeline.chosen_options = {"steps": 6, "why": "plan"}
        return pipeline

    class Chooser:
        from seed_core import hookimpl

        @hookimpl
        def seed_register_accelerators(self, register):
            register(
                AcceleratorSpec(
                    "chooser", AcceleratorKind.STEPS, choose, options=(AcceleratorOption("steps", int),)
                )
            )
            register(AcceleratorSpec("plain", AcceleratorKind.MEMORY, _apply("plain")))

    seed_registry_factory(Chooser())
    pipeline = apply_accelerators(Pipeline(MODEL), plan_accelerators(["chooser", "plain"], MODEL))
    assert [a.options for a in pipeline.accelerators] == [{"steps": 6, "why": "plan"}, {}]
    pipeline = apply_accelerators(Pipeline(MODEL), plan_accelerators(["chooser:steps=2"], MODEL))
    assert pipeline.accelerators[0].options == {"steps": 2, "why": "plan"}


def test_defaults_fill_in(seed_registry_factory):
    seed_registry_factory(Plugin())
    [(_spec, options)] = plan_accelerators(["student"], MODEL)
    assert options == {"steps": 4}


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["student", "student2"], "'student' and 'student2' both change the model's steps; use one"),
        (["sparse", "offload"], "'sparse' and 'offload' conflict: offloading breaks"),
        (["offload", "sparse"], "'offload' and 'sparse' conflict: offloading breaks"),
        (["int8", "int8"], "'int8' is given twice"),
        (["student:steps=two"], "option steps='two' is not a valid int"),
        (["student:step=2"], "has no option 'step'. Did you mean 'steps'?"),
        (["int8:per_channel=maybe"], "per_channel='maybe' is not a valid bool"),
    ],
)
def test_refused_with_reason(seed_registry_factory, names, message):
    seed_registry_factory(Plugin())
    with pytest.raises(AcceleratorError) as info:
        plan_accelerators(names, MODEL)
    assert message in str(info.value)


def test_memory_kind_is_not_exclusive(seed_registry_factory):
    seed_registry_factory(Plugin())
    assert len(plan_accelerators(["offload", "tiling"], MODEL)) == 2


def test_applies_to_reason(seed_registry_factory):
    seed_registry_factory(Plugin())
    with pytest.raises(AcceleratorError, match="'sparse' does not apply to model 'v': needs a DiT backbone"):
        plan_accelerators(["sparse"], VIDEO)


def test_unknown_accelerator(seed_registry_factory):
    seed_registry_factory(Plugin())
    with pytest.raises(UnknownAcceleratorError, match="Did you mean 'int8'"):
        plan_accelerators(["int9"], MODEL)


def test_kind_order_is_the_documented_one():
    assert [k.value for k in sorted(AcceleratorKind, key=lambda k: k.order)] == [
        "steps",
        "weights",
        "attention",
        "memory",
        "decoding",
    ]
