"""The plugin contract: every hook a Seed plugin may implement.

A plugin is a module named by an entry point in the `seed` group. It implements any of these hooks with
`@seed_core.hookimpl`. Each hook receives a `register` callable owned by seed-core and calls it once per
part; it returns nothing. Hooks grow by new keyword arguments only, so old plugins keep working.

Keep plugin modules light: they are imported on every `seed` command, including `seed --help`, so import
torch and model code inside the callables of the specs, never at module level.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from seed_core.specs import (
        AcceleratorSpec,
        AttentionBackendSpec,
        DistillMethodSpec,
        ModelSpec,
        RewardModelSpec,
        SamplerSpec,
        WeightAdapterSpec,
    )

PROJECT = "seed"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def seed_register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register models: call ``register(ModelSpec(...))`` once per model.

    :param register: takes a :class:`~seed_core.specs.ModelSpec` (name, family, tasks, build, weights,
        aliases). Its ``build`` callable is only run when the model is loaded.

    Example::

        @hookimpl
        def seed_register_models(register):
            register(ModelSpec(name="my-model", family="toy", tasks=("t2i",), build=_build))
    """


@hookspec
def seed_register_samplers(register: Callable[[SamplerSpec], None]) -> None:
    """Register flow-matching samplers: call ``register(SamplerSpec(...))`` once per solver.

    :param register: takes a :class:`~seed_core.specs.SamplerSpec` whose ``factory()`` returns an object
        with ``sample(velocity, x, timesteps, callback=None)`` (see :mod:`seed_core.samplers`).
    """


@hookspec
def seed_register_attention_backends(register: Callable[[AttentionBackendSpec], None]) -> None:
    """Register attention backends for :func:`seed_core.attention.attention`.

    :param register: takes a :class:`~seed_core.specs.AttentionBackendSpec`; ``fn(q, k, v, *, mask,
        is_causal, scale)`` must follow the shape contract documented in :mod:`seed_core.attention`.
    """


@hookspec
def seed_register_accelerators(register: Callable[[AcceleratorSpec], None]) -> None:
    """Register accelerators (distilled students, quantization, sparse attention, offloading, ...).

    :param register: takes a :class:`~seed_core.specs.AcceleratorSpec` with a kind, an ``applies_to``
        check that returns a reason, and ``apply(pipeline, **options)``.
    """


@hookspec
def seed_register_distill_methods(register: Callable[[DistillMethodSpec], None]) -> None:
    """Register distillation methods used by ``seed distill``.

    :param register: takes a :class:`~seed_core.specs.DistillMethodSpec` whose ``run(teacher,
        output_dir, **options)`` trains a student and writes it as a model directory.
    """


@hookspec
def seed_register_reward_models(register: Callable[[RewardModelSpec], None]) -> None:
    """Register differentiable reward models, used by ``seed distill --reward NAME``.

    :param register: takes a :class:`~seed_core.specs.RewardModelSpec` whose ``build(device)`` returns a
        module mapping images in [-1, 1] and their prompts to rewards (higher is better).
    """


@hookspec
def seed_register_weight_adapters(register: Callable[[WeightAdapterSpec], None]) -> None:
    """Register converters from foreign checkpoint layouts to native state dicts.

    :param register: takes a :class:`~seed_core.specs.WeightAdapterSpec` with ``detect(keys)`` and
        ``convert(state_dict)``; :func:`seed_core.weights.adapt_state_dict` picks the adapter that detects.
    """


@hookspec
def seed_register_commands(app: Any) -> None:
    """Add sub-commands to the ``seed`` command line.

    :param app: the root ``typer.Typer`` application; add commands with ``@app.command()`` or a group
        with ``app.add_typer(...)``. Import heavy modules inside the command function, not here.
    """
