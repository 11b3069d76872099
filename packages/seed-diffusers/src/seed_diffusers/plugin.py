"""seed-diffusers' plugin: the `diffusers` model (`-m diffusers:PATH`). No torch at import."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from seed_core import hookimpl
from seed_core.errors import UsageError
from seed_core.specs import LoadOptions, ModelSpec


def _build(spec: ModelSpec, options: LoadOptions) -> Any:
    if not options.weights:
        raise UsageError("the 'diffusers' model needs a pipeline folder: -m diffusers:PATH")
    from seed_diffusers.pipeline import DiffusersPipeline

    return DiffusersPipeline.open(spec, options.weights, options)


@hookimpl
def seed_register_models(register: Callable[[ModelSpec], None]) -> None:
    register(
        ModelSpec(
            "diffusers",
            "diffusers",
            ("t2i", "t2v"),
            _build,
            description="a local diffusers pipeline folder (SD3, Flux, Wan 2.1): -m diffusers:PATH",
        )
    )
