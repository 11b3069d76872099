"""seed-dit's parts, registered through the `seed` entry point like any plugin's. No torch at import."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from seed_core import hookimpl
from seed_core.errors import NoModelInstalledError
from seed_core.specs import LoadOptions, ModelSpec

TASKS = ("t2i", "edit", "compose")


def _build_random(spec: ModelSpec, options: LoadOptions) -> Any:
    from seed_dit.pipeline import SeedreamPipeline, random_pipeline

    if options.weights:
        return SeedreamPipeline.from_pretrained(spec, options.weights, options)
    return random_pipeline(spec, options)


def _build_large(spec: ModelSpec, options: LoadOptions) -> Any:
    from seed_dit.pipeline import SeedreamPipeline

    weights = options.weights or spec.weights
    if not weights:
        raise NoModelInstalledError(
            f"'{spec.name}' is an architecture without public weights; pass a model directory with -m PATH"
        )
    return SeedreamPipeline.from_pretrained(spec, weights, options)


def _details(dit: str, vae: str) -> Callable[[], Mapping[str, Any]]:
    def details() -> Mapping[str, Any]:
        from seed_dit.pipeline import parameter_counts

        return parameter_counts(dit, vae)

    return details


@hookimpl
def seed_register_models(register: Callable[[ModelSpec], None]) -> None:
    register(
        ModelSpec(
            "seedream-tiny-random",
            "seedream",
            TASKS,
            _build_random,
            description="Seedream MMDiT, tiny preset, random weights: exercises the pipeline, makes noise",
            details=_details("tiny", "tiny-f8"),
        )
    )
    register(
        ModelSpec(
            "seedream",
            "seedream",
            TASKS,
            _build_large,
            description="any Seedream model directory (config.json + safetensors): seed generate -m PATH",
        )
    )
    register(
        ModelSpec(
            "seedream-1b",
            "seedream",
            TASKS,
            _build_large,
            description="Seedream MMDiT 1B+ architecture with a 16x VAE (bring your own weights)",
            details=_details("1b", "f16c32"),
        )
    )
    register(
        ModelSpec(
            "seedream-8b",
            "seedream",
            TASKS,
            _build_large,
            description="Seedream MMDiT ~8B architecture with a 32x VAE (bring your own weights)",
            details=_details("8b", "f32c64"),
        )
    )
