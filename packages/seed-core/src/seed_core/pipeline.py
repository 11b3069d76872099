"""Pipelines, loading by name or path, and applying accelerators.

The flow of one request: ``load(MODEL, accelerators=[...])`` builds the pipeline from its `ModelSpec`,
applies each accelerator in kind order (steps, weights, attention, memory, decoding) after refusing the
inapplicable and the conflicting, then ``pipeline.run(request)`` returns a `GenerationResult`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seed_core.errors import AcceleratorError, ConfigError, UnsupportedTaskError, UsageError
from seed_core.registry import Registry, get_registry
from seed_core.requests import (
    AppliedAccelerator,
    EditRequest,
    GenerateRequest,
    GenerationResult,
    VideoRequest,
)
from seed_core.specs import AcceleratorKind, AcceleratorSpec, LoadOptions, ModelSpec

if TYPE_CHECKING:
    from seed_core.distill import DistillTarget

#: called with (step, total) while a pipeline samples; the CLI passes a progress bar
Progress = Callable[[int, int], None]
#: the command that serves each task (named when a model is asked for a task it does not serve)
COMMANDS = {"t2i": "seed generate", "edit": "seed edit", "t2v": "seed video", "restore": "seed restore"}


class Pipeline:
    """What a `ModelSpec.build` returns. Subclasses implement the tasks their model lists.

    `components()` names the torch modules (backbone, VAE, text encoder) so that accelerators can find
    and transform them without knowing the backbone.
    """

    default_steps: int = 28
    default_guidance: float = 4.5
    default_size: tuple[int, int] = (64, 64)  # (width, height)
    default_sampler: str = "euler"

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.accelerators: list[AppliedAccelerator] = []
        # the model directory the weights came from (set by `load`): accelerators keep their artefacts
        # (a PARO plan, a quantized state) beside it
        self.source: str | None = None
        # what the accelerator being applied chose for options the user left out (a PARO plan's density):
        # `apply_accelerators` records them with the given options, so an output's metadata names them
        self.chosen_options: dict[str, Any] = {}

    def components(self) -> dict[str, Any]:
        return {}

    def sensitive_modules(self) -> dict[str, tuple[str, ...]]:
        """Per component, the module names (fnmatch patterns) that weight accelerators must keep in
        full precision: the backbone knows which layers carry the most error (input embeddings, the final
        projection, ...)."""
        return {}

    def generate(self, request: GenerateRequest, progress: Progress | None = None) -> GenerationResult:
        raise UnsupportedTaskError(f"model '{self.spec.name}' cannot generate from text")

    def edit(self, request: EditRequest, progress: Progress | None = None) -> GenerationResult:
        raise UnsupportedTaskError(f"model '{self.spec.name}' cannot edit images")

    def video(self, request: VideoRequest, progress: Progress | None = None) -> GenerationResult:
        raise UnsupportedTaskError(f"model '{self.spec.name}' cannot make videos")

    def distill_target(self, prompts: Sequence[str], size: tuple[int, int] | None = None) -> DistillTarget:
        """This model as a teacher for `seed distill` (see seed_core.distill), trained on `prompts`."""
        raise UnsupportedTaskError(
            f"model '{self.spec.name}' does not implement the distillation protocol "
            "(seed_core.distill.DistillTarget), so it cannot be a teacher"
        )

    def load_student(self, directory: Path) -> dict[str, Any]:
        """Swap in a distilled student saved by `DistillTarget.save_student`; returns its info."""
        raise UnsupportedTaskError(f"model '{self.spec.name}' cannot load distilled students")

    def text_request(self, prompt: str, **options: Any) -> GenerateRequest:
        """A text request of the kind this model serves: a `VideoRequest` for a text-to-video model (then
        `frames` counts), else a `GenerateRequest`. For tools that only need to run a model (calibration)."""
        if "t2i" not in self.spec.tasks and "t2v" in self.spec.tasks:
            return VideoRequest(prompt, **options)
        options.pop("frames", None)
        return GenerateRequest(prompt, **options)

    def run(self, request: GenerateRequest, progress: Progress | None = None) -> GenerationResult:
        """Validate `request` and dispatch it to the task method."""
        if request.task not in self.spec.tasks:
            hint = next((COMMANDS[t] for t in self.spec.tasks if t in COMMANDS), None)
            raise UnsupportedTaskError(
                f"model '{self.spec.name}' does not support the '{request.task}' task "
                f"(it supports: {', '.join(self.spec.tasks)})" + (f"; use `{hint}`" if hint else "")
            )
        request.validate()
        if isinstance(request, EditRequest):
            return self.edit(request, progress)
        if isinstance(request, VideoRequest):
            return self.video(request, progress)
        return self.generate(request, progress)


@dataclass(frozen=True)
class AcceleratorRequest:
    """One `--accel NAME[:key=value,...]` as the user wrote it."""

    name: str
    options: Mapping[str, str]

    @classmethod
    def parse(cls, text: str) -> AcceleratorRequest:
        name, _, rest = text.partition(":")
        name = name.strip()
        if not name:
            raise AcceleratorError(f"--accel {text!r}: expected NAME or NAME:key=value[,key=value]")
        options: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise AcceleratorError(f"--accel {text!r}: option {item!r} is not key=value")
            options[key.strip()] = value.strip()
        return cls(name, options)


def baked_accelerators(directory: str | None) -> list[AppliedAccelerator]:
    """The accelerators already applied to the weights of a model directory (`seed quantize` records
    them in config.json under "baked_accelerators")."""
    if directory is None or not (Path(directory) / "config.json").is_file():
        return []
    config = Path(directory) / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
        return [
            AppliedAccelerator(str(item["name"]), str(item["kind"]), dict(item.get("options", {})))
            for item in (data.get("baked_accelerators") or [])
        ]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return []  # resolve_model reports an unreadable config.json
    except (KeyError, TypeError, AttributeError):
        raise ConfigError(f"{config}: 'baked_accelerators' is malformed; re-create the directory") from None


def plan_accelerators(
    requested: Sequence[AcceleratorRequest | str],
    model: ModelSpec,
    registry: Registry | None = None,
    baked: Sequence[AppliedAccelerator] = (),
) -> list[tuple[AcceleratorSpec, dict[str, Any]]]:
    """Resolve, check and order the accelerators for `model`; refuse inapplicable or conflicting ones.

    `baked` are the accelerators already applied to the weights on disk (a quantized directory): a second
    one of their kind, or one that must come before them, is refused.
    """
    registry = registry or get_registry()
    chosen: list[tuple[AcceleratorSpec, dict[str, Any]]] = []
    for item in requested:
        req = AcceleratorRequest.parse(item) if isinstance(item, str) else item
        spec = registry.accelerators.get(req.name)
        reason = spec.applies_to(model)
        if reason:
            raise AcceleratorError(
                f"accelerator '{spec.name}' does not apply to model '{model.name}': {reason}"
            )
        for done in baked:
            if done.name == spec.name or (done.kind == spec.kind.value and spec.kind.exclusive):
                raise AcceleratorError(
                    f"this model directory is already '{done.label()}' ({done.kind}); apply "
                    f"'{spec.name}' to the original model instead"
                )
            if done.kind in {k.value for k in AcceleratorKind}:
                if spec.kind.order < AcceleratorKind(done.kind).order:
                    raise AcceleratorError(
                        f"'{spec.name}' ({spec.kind.value}) must be applied before '{done.name}', which is "
                        f"baked into this model directory; load the original model with --accel "
                        f"{spec.name} --accel {done.name}"
                    )
        for other, _ in chosen:
            if other.name == spec.name:
                raise AcceleratorError(f"accelerator '{spec.name}' is given twice; give it once")
            why = spec.conflicts.get(other.name) or other.conflicts.get(spec.name)
            if why:
                raise AcceleratorError(f"accelerators '{other.name}' and '{spec.name}' conflict: {why}")
            if spec.kind == other.kind and spec.kind.exclusive:
                raise AcceleratorError(
                    f"accelerators '{other.name}' and '{spec.name}' both change the model's "
                    f"{spec.kind.value}; use one of them"
                )
        chosen.append((spec, spec.parse_options(req.options)))
    return sorted(chosen, key=lambda pair: pair[0].kind.order)  # stable: user order within a kind


def apply_accelerators(
    pipeline: Pipeline, plan: Iterable[tuple[AcceleratorSpec, dict[str, Any]]]
) -> Pipeline:
    """Apply a plan from `plan_accelerators`, recording each step on the pipeline: its given options and
    those it chose itself (`Pipeline.chosen_options`; given ones win)."""
    for spec, options in plan:
        pipeline.chosen_options = {}
        pipeline = spec.apply(pipeline, **options) or pipeline
        chosen = {k: v for k, v in pipeline.chosen_options.items() if options.get(k) is None}
        pipeline.chosen_options = {}
        pipeline.accelerators.append(AppliedAccelerator(spec.name, spec.kind.value, {**options, **chosen}))
    return pipeline


def models_home() -> Path:
    """The local model store: `$SEED_HOME/models` (default `~/.cache/seed/models`). A model directory kept
    there as `NAME/` (e.g. written by `seed quantize --name NAME`) loads by its name."""
    import os

    return Path(os.environ.get("SEED_HOME") or Path.home() / ".cache" / "seed").expanduser() / "models"


def stored_models() -> list[str]:
    """Names of the model directories in the local store."""
    home = models_home()
    if not home.is_dir():
        return []
    return sorted(d.name for d in home.iterdir() if (d / "config.json").is_file())


def resolve_model(name_or_path: str, registry: Registry | None = None) -> tuple[ModelSpec, str | None]:
    """A registered name or alias, a model directory whose config.json names its model, the name of a
    directory in the local store (`models_home()`), or `NAME:PATH`: registered model NAME with the
    weights in PATH (e.g. `diffusers:./sd3-medium`).

    Returns the spec and the weights path (None: the spec's own default).
    """
    registry = registry or get_registry()
    prefix, colon, rest = name_or_path.partition(":")
    if colon and rest and prefix in registry.models and name_or_path not in registry.models:
        where = Path(rest).expanduser()  # the shell does not expand ~ after the colon
        if not where.exists():
            raise UsageError(f"{name_or_path}: {rest} does not exist; give the folder of the model's files")
        return registry.models.get(prefix), str(where)
    path = Path(name_or_path)
    if name_or_path not in registry.models and not path.is_dir() and "/" not in name_or_path:
        stored = models_home() / name_or_path
        if (stored / "config.json").is_file():
            path = stored
    if name_or_path not in registry.models and path.is_dir():
        config = path / "config.json"
        if not config.exists():
            hint = (
                f"; for a diffusers pipeline use -m diffusers:{path}"
                if (path / "model_index.json").is_file()
                else ""
            )
            raise UsageError(f"{path} is a directory without config.json; it is not a model directory{hint}")
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{config}: not valid JSON ({exc.msg})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
        name = data.get("seed_model") if isinstance(data, dict) else None
        if not isinstance(name, str):
            raise ConfigError(f"{config}: no 'seed_model' key naming the registered model it belongs to")
        return registry.models.get(name), str(path)
    if name_or_path not in registry.models and (
        "/" in name_or_path or name_or_path.startswith(".") or path.exists()
    ):  # written as a path: say that it is missing, not that no model is called that
        what = "a file, not a model directory" if path.exists() else "no such directory"
        raise UsageError(f"-m {name_or_path}: {what}; give a model name (seed models) or a model directory")
    return registry.models.get(name_or_path), None


DTYPES = ("float32", "float16", "bfloat16")


def check_device(device: str, dtype: str) -> None:
    """Refuse a device this machine does not have, or an unknown dtype, with one line."""
    if dtype not in DTYPES:
        raise UsageError(f"unknown dtype '{dtype}'; use one of {', '.join(DTYPES)}")
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UsageError(f"unknown device '{device}'; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device '{device}' requested but CUDA is not available here; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"device '{device}' does not exist: {torch.cuda.device_count()} GPU(s) found")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError("device 'mps' requested but MPS is not available here; use --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"device type '{dev.type}' is not supported; use cpu, cuda or mps")


def load(
    name_or_path: str,
    *,
    accelerators: Sequence[AcceleratorRequest | str] = (),
    device: str = "cpu",
    dtype: str = "float32",
    registry: Registry | None = None,
    weights: str | None = None,
) -> Pipeline:
    """Build the pipeline for a model name or directory and apply `accelerators` to it. `weights` names
    a directory of weights for the model (e.g. an official release's files) instead of its default, or
    a file where the model takes one (e.g. one variant of a release)."""
    registry = registry or get_registry()
    check_device(device, dtype)
    spec, found = resolve_model(name_or_path, registry)
    if weights is not None and not Path(weights).exists():
        raise UsageError(f"--weights {weights}: no such file or directory")
    weights = weights or found
    baked = baked_accelerators(weights or spec.weights)
    plan = plan_accelerators(accelerators, spec, registry, baked)  # refuse bad combinations before loading
    pipeline = spec.build(spec, LoadOptions(device=device, dtype=dtype, weights=weights))
    pipeline.source = weights or spec.weights
    pipeline.accelerators.extend(baked)
    return apply_accelerators(pipeline, plan)
