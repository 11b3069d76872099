"""seed-core's own parts, registered through the same hooks a plugin uses.

Kept free of torch at import time: `seed --help` imports this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from seed_core.hookspecs import hookimpl
from seed_core.specs import AttentionBackendSpec, SamplerSpec


def _sampler(class_name: str) -> Callable[[], Any]:
    def factory() -> Any:
        from seed_core import samplers

        return getattr(samplers, class_name)()

    return factory


def _attention(func_name: str) -> Callable[..., Any]:
    def fn(q: Any, k: Any, v: Any, **kwargs: Any) -> Any:
        from seed_core import attention

        return getattr(attention, func_name)(q, k, v, **kwargs)

    return fn


@hookimpl
def seed_register_samplers(register: Callable[[SamplerSpec], None]) -> None:
    register(SamplerSpec("euler", _sampler("FlowMatchEuler"), 1, "Euler, 1 model call per step"))
    register(SamplerSpec("heun", _sampler("FlowMatchHeun"), 2, "Heun (2nd order), 2 model calls per step"))
    register(
        SamplerSpec(
            "dpmpp-2m",
            _sampler("FlowMatchDPMSolver2M"),
            2,
            "DPM-Solver++(2M), 2nd order with 1 model call per step",
            aliases=("dpm++2m", "dpmpp_2m"),
        )
    )


@hookimpl
def seed_register_attention_backends(register: Callable[[AttentionBackendSpec], None]) -> None:
    register(
        AttentionBackendSpec(
            "sdpa",
            _attention("sdpa_attention"),
            "torch scaled_dot_product_attention (flash / memory-efficient / cuDNN where available)",
            aliases=("torch",),
        )
    )
    register(
        AttentionBackendSpec(
            "math", _attention("math_attention"), "plain softmax(QK^T)V in float32: the reference"
        )
    )
