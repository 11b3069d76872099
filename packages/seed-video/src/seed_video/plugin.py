"""seed-video's parts: the SeedVR2 models (architectures; the restore pipeline is not built yet).
No torch at import: `seed --help` imports this module."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from seed_core import hookimpl
from seed_core.specs import LoadOptions, ModelSpec


def _meta(preset: str) -> Callable[[], Mapping[str, Any]]:
    def meta() -> Mapping[str, Any]:
        from seed_core.weights import build_on_meta
        from seed_vae.video import CausalVideoVAE, VideoVAEConfig
        from seed_video.config import NaDiTConfig
        from seed_video.nadit import NaDiT

        return {
            "dit": build_on_meta(lambda: NaDiT(NaDiTConfig.preset(preset))),
            "vae": build_on_meta(lambda: CausalVideoVAE(VideoVAEConfig.preset("seedvr2"))),
        }

    return meta


def _details(preset: str) -> Callable[[], Mapping[str, Any]]:
    def details() -> Mapping[str, Any]:
        from seed_core.weights import human_count

        parts = _meta(preset)()
        return {
            name: human_count(sum(p.numel() for p in m.state_dict().values())) for name, m in parts.items()
        }

    return details


def _build(spec: ModelSpec, options: LoadOptions) -> Any:
    from seed_core.errors import UnsupportedTaskError

    raise UnsupportedTaskError(
        f"'{spec.name}': the SeedVR2 restore pipeline is not built yet (the DiT and VAE architectures are; "
        f"see `seed inspect {spec.name}`)"
    )


@hookimpl
def seed_register_models(register: Callable[[ModelSpec], None]) -> None:
    for preset in ("3b", "7b"):
        register(
            ModelSpec(
                f"seedvr2-{preset}",
                "seedvr2",
                ("restore",),
                _build,
                description=f"SeedVR2-{preset.upper()} video restoration: architecture only, no pipeline yet",
                details=_details(preset),
                meta=_meta(preset),
            )
        )
