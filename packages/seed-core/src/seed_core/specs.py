"""What plugins register: one small frozen dataclass per kind of part.

Specs are cheap to build and import nothing heavy: anything that needs torch (building a model, running an
accelerator) sits behind a callable that is only called when the part is used, so `seed --help` and
`seed models` stay fast.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from seed_core.errors import AcceleratorError, did_you_mean

if TYPE_CHECKING:
    from seed_core.pipeline import Pipeline

#: Tasks a model can serve. A model lists the ones it supports in `ModelSpec.tasks`.
TASKS: tuple[str, ...] = ("t2i", "edit", "compose", "t2v", "i2v", "restore", "stream")


@dataclass(frozen=True)
class LoadOptions:
    """How the user asked to load a model (passed to `ModelSpec.build`)."""

    device: str = "cpu"
    dtype: str = "float32"
    weights: str | None = None  # a path that overrides the spec's default weights


@dataclass(frozen=True)
class ModelSpec:
    """A model the toolkit can load by name.

    `build(spec, options)` returns a ready `Pipeline`; it is only called on `seed_core.load()`, so it may
    import torch and the backbone package inside. `weights` is the default location of the weights (a
    local path, or None for a model that ships none); `details()` may return extra facts (parameter count,
    resolution) for `seed models --details`, and should build on the meta device so it is cheap.
    `meta()` may return the model's components built on the meta device ({file stem: module}), whose
    state dicts are the checkpoint layouts it loads (`seed inspect MODEL`).
    """

    name: str
    family: str
    tasks: tuple[str, ...]
    build: Callable[[ModelSpec, LoadOptions], Pipeline]
    description: str = ""
    weights: str | None = None
    aliases: tuple[str, ...] = ()
    details: Callable[[], Mapping[str, Any]] | None = None
    meta: Callable[[], Mapping[str, Any]] | None = None

    def __post_init__(self) -> None:
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ValueError(
                f"model '{self.name}': unknown task {unknown[0]!r}; tasks are {', '.join(TASKS)}"
            )


class AcceleratorKind(str, enum.Enum):
    """What an accelerator changes. Accelerators are applied in this order (see `order`)."""

    STEPS = "steps"  # a distilled student / fewer sampling steps
    WEIGHTS = "weights"  # quantized or otherwise transformed weights
    ATTENTION = "attention"  # a different attention backend / sparsity
    MEMORY = "memory"  # offloading, tiling, caching of activations
    DECODING = "decoding"  # the language side: speculative decoding of the prompt enhancer

    @property
    def order(self) -> int:
        return list(AcceleratorKind).index(self)

    @property
    def exclusive(self) -> bool:
        """Only one accelerator of an exclusive kind can be active: two students or two weight formats
        cannot both own the same tensors."""
        return self in (AcceleratorKind.STEPS, AcceleratorKind.WEIGHTS, AcceleratorKind.ATTENTION)


@dataclass(frozen=True)
class AcceleratorOption:
    """One `key=value` option an accelerator accepts on the command line (`--accel name:key=value`)."""

    name: str
    type: type = str
    default: Any = None
    help: str = ""

    def parse(self, accelerator: str, raw: Any) -> Any:
        if not isinstance(raw, str) or self.type is str:
            return raw
        try:
            if self.type is bool:
                if raw.lower() in ("1", "true", "yes", "on"):
                    return True
                if raw.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(raw)
            return self.type(raw)
        except ValueError:
            raise AcceleratorError(
                f"accelerator '{accelerator}': option {self.name}={raw!r} is not a valid {self.type.__name__}"
            ) from None


@dataclass(frozen=True)
class AcceleratorSpec:
    """A transformation of a loaded pipeline that makes it faster or smaller.

    `applies_to(model)` returns None when the accelerator can run on that model, else the reason it can't.
    `apply(pipeline, **options)` changes the pipeline (in place or by returning a new one) and returns it.
    `conflicts` names accelerators that must not be combined with this one, with the reason.
    `restore(module, record)`, for accelerators whose result is saved (a quantized checkpoint), rebuilds
    the transformed layers of `module` (still on the meta device) from the `record` that the accelerator
    wrote into the file's metadata, so that the file loads without redoing the work; it returns the module.
    """

    name: str
    kind: AcceleratorKind
    apply: Callable[..., Pipeline]
    description: str = ""
    applies_to: Callable[[ModelSpec], str | None] = lambda model: None
    options: tuple[AcceleratorOption, ...] = ()
    conflicts: Mapping[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    restore: Callable[..., Any] | None = None

    def parse_options(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Check option names and convert values to the declared types; fill in defaults."""
        by_name = {o.name: o for o in self.options}
        out = {o.name: o.default for o in self.options if o.default is not None}
        for key, value in raw.items():
            if key not in by_name:
                raise AcceleratorError(
                    f"accelerator '{self.name}' has no option '{key}'." + did_you_mean(key, by_name)
                )
            out[key] = by_name[key].parse(self.name, value)
        return out


@dataclass(frozen=True)
class SamplerSpec:
    """A flow-matching ODE solver. `factory()` returns an object with `sample(...)` (see samplers.py)."""

    name: str
    factory: Callable[[], Any]
    order: int = 1
    description: str = ""
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class AttentionBackendSpec:
    """An implementation of `seed_core.attention.attention` (same signature, same shape contract).

    `supports(q, k, v, mask, is_causal)` may return a reason why this backend cannot take those inputs
    (dtype, head size, device); the dispatcher then raises that reason instead of computing garbage.
    """

    name: str
    fn: Callable[..., Any]
    description: str = ""
    supports: Callable[..., str | None] | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class DistillMethodSpec:
    """A way to train a faster student from a teacher model (`seed distill --method NAME`).

    `run(teacher, output_dir, **options)` trains and writes a student model directory; it must resume
    from the last checkpoint in `output_dir` after a crash.
    """

    name: str
    run: Callable[..., Any]
    description: str = ""
    student: AcceleratorKind = AcceleratorKind.STEPS
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class RewardModelSpec:
    """A differentiable reward: how well images fit their prompts (ReFL-style distillation terms).

    `build(device)` returns a callable module ``model(images, prompts) -> (B,) rewards``: images (B, 3, H, W)
    in [-1, 1], higher is better, with gradients flowing to the images. `margin` is the reward at which the
    ReFL hinge ``relu(margin - r)`` stops pushing (the reward of a typical good image).
    """

    name: str
    build: Callable[[str], Any]
    description: str = ""
    margin: float = 0.0
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class WeightAdapterSpec:
    """Turns a foreign checkpoint layout (official release, diffusers, ...) into a native state dict.

    `detect(keys)` says whether a state dict with those keys is in this layout; `convert(state_dict)`
    returns the native state dict (renamed, split or fused tensors).
    """

    name: str
    detect: Callable[[frozenset[str]], bool]
    convert: Callable[[dict[str, Any]], dict[str, Any]]
    description: str = ""
    aliases: tuple[str, ...] = ()
