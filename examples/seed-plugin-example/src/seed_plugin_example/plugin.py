"""The example plugin: the hook implementations Seed finds through the `seed` entry point.

Nothing heavy is imported here; the model, accelerator and sampler code load when first used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from seed_core import hookimpl
from seed_core.specs import (
    AcceleratorKind,
    AcceleratorOption,
    AcceleratorSpec,
    LoadOptions,
    ModelSpec,
    SamplerSpec,
)


def _build(spec: ModelSpec, options: LoadOptions) -> Any:
    from seed_plugin_example.model import ToyPipeline

    return ToyPipeline.load(spec, options)


def _fewer_steps(pipeline: Any, factor: int = 2) -> Any:
    from seed_plugin_example.model import divide_steps

    return divide_steps(pipeline, factor)


def _midpoint() -> Any:
    from seed_plugin_example.model import FlowMatchMidpoint

    return FlowMatchMidpoint()


@hookimpl
def seed_register_models(register: Callable[[ModelSpec], None]) -> None:
    register(
        ModelSpec(
            name="toy-gradient",
            family="toy",
            tasks=("t2i", "edit"),
            build=_build,
            description="Example plugin: colour gradients named by the prompt (no training, CPU, instant)",
            aliases=("toy",),
        )
    )


@hookimpl
def seed_register_accelerators(register: Callable[[AcceleratorSpec], None]) -> None:
    register(
        AcceleratorSpec(
            name="toy-fewer-steps",
            kind=AcceleratorKind.STEPS,
            apply=_fewer_steps,
            description="Example plugin: divide the sampling steps of a toy model",
            applies_to=lambda model: None if model.family == "toy" else "it only knows toy-family models",
            options=(AcceleratorOption("factor", int, 2, "divide the step count by this"),),
        )
    )


@hookimpl
def seed_register_samplers(register: Callable[[SamplerSpec], None]) -> None:
    register(SamplerSpec("toy-midpoint", _midpoint, 2, "Example plugin: explicit midpoint (2nd order)"))
