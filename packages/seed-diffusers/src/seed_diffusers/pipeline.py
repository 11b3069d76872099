"""A local diffusers pipeline directory as a Seed pipeline.

`DiffusersPipeline.open(spec, path, options)` checks the folder (model_index.json, a supported pipeline
class, its components), loads it with no network access, routes the transformer's self-attention through
seed-core's dispatch (see `seed_diffusers.attention`) and maps Seed requests onto the diffusers call:
prompt, negative prompt, size, steps, guidance, seed (image i uses seed + i) and number of outputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from seed_core.errors import ConfigError, InvalidRequestError, UsageError
from seed_core.pipeline import Pipeline, Progress
from seed_core.requests import GenerateRequest, GenerationResult, VideoRequest
from seed_core.specs import LoadOptions, ModelSpec
from seed_diffusers.attention import route
from seed_diffusers.distill import STUDENT_FILE
from seed_diffusers.families import FAMILIES, Family, supported

if TYPE_CHECKING:
    from seed_core.distill import DistillTarget


def read_index(path: Path) -> tuple[dict[str, Any], Family]:
    """model_index.json of a pipeline folder and its family; one clear line for every way it is wrong."""
    if not path.is_dir():
        raise UsageError(f"{path}: not a directory; give the folder of a diffusers pipeline")
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise UsageError(
            f"{path} is not a diffusers pipeline (no model_index.json); supported pipelines: {supported()}"
        )
    index = read_json(index_file)
    name = index.get("_class_name")
    family = FAMILIES.get(str(name))
    if family is None:
        raise UsageError(
            f"{path}: pipeline class {name} is not supported; supported pipelines: {supported()}"
        )
    for part in family.required:
        entry = index.get(part)
        if not _present(entry) or not (path / part).is_dir():
            raise UsageError(
                f"{path}: {name} needs the component '{part}' (folder {part}/ and its entry in "
                f"model_index.json); required: {', '.join(family.required)}"
            )
    if _present(index.get("transformer_2")):
        raise UsageError(
            f"{path}: two-expert Wan 2.2 pipelines (transformer_2) are not supported yet; "
            f"supported pipelines: {supported()}"
        )
    return index, family


def _present(entry: Any) -> bool:
    """A model_index.json component entry: [library, class], both set."""
    return isinstance(entry, list) and len(entry) == 2 and None not in entry


def _dtype_key() -> str:
    """diffusers 0.42 renamed from_pretrained's torch_dtype to dtype (the old name warns)."""
    import diffusers

    major, minor = (int(p) for p in diffusers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (0, 42) else "torch_dtype"


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file, or one clear line (ConfigError) saying why not."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


class DiffusersPipeline(Pipeline):
    """A diffusers SD3 / Flux / Wan pipeline behind Seed's requests, accelerators and distillation."""

    default_sampler = "diffusers"

    def __init__(self, spec: ModelSpec, pipe: Any, family: Family, path: Path, device: str) -> None:
        super().__init__(spec)
        self.pipe, self.family, self.path = pipe, family, path
        self.device = torch.device(device)
        self.default_steps = family.default_steps
        self.default_guidance = family.default_guidance
        if family.short == "flux" and not pipe.transformer.config.guidance_embeds:
            self.default_steps, self.default_guidance = 4, 0.0  # Flux-schnell: few steps, no guidance input
        side = int(getattr(pipe, "default_sample_size", 0) or 0) * int(getattr(pipe, "vae_scale_factor", 1))
        if family.task == "t2v":
            self.default_size = (832, 480)
            self.default_frames = 81
        else:
            self.default_size = (side, side) if side else (1024, 1024)
        self.routed = route(pipe.transformer, family)
        # SD3 and Flux take a student's grid as `sigmas`; Wan's call does not (see _student_grid)
        self.takes_sigmas = "sigmas" in inspect.signature(type(pipe).__call__).parameters
        self.student: dict[str, Any] | None = None

    @classmethod
    def open(cls, spec: ModelSpec, path: str | Path, options: LoadOptions) -> DiffusersPipeline:
        import diffusers
        import transformers

        path = Path(path)
        index, family = read_index(path)
        absent = {k: None for k, v in index.items() if isinstance(v, list) and not _present(v)}
        diffusers.utils.logging.disable_progress_bar()  # Seed shows its own progress
        transformers.utils.logging.disable_progress_bar()
        try:
            pipe = getattr(diffusers, family.pipeline).from_pretrained(
                str(path), local_files_only=True, **{_dtype_key(): getattr(torch, options.dtype)}, **absent
            )
        except Exception as exc:  # corrupt or mismatched files: diffusers and safetensors raise many types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ConfigError(
                f"{path}: diffusers cannot load this pipeline ({type(exc).__name__}: {first[:300]})"
            ) from None
        pipe.set_progress_bar_config(disable=True)
        pipe.to(options.device)
        own = dataclasses.replace(
            spec, name=f"diffusers:{path}", tasks=(family.task,), weights=str(path), family=family.short
        )
        pipeline = cls(own, pipe, family, path, options.device)
        if (path / STUDENT_FILE).is_file():  # a student saved by `seed distill`: its steps become defaults
            pipeline.use_student_info(read_json(path / STUDENT_FILE), path / STUDENT_FILE)
        return pipeline

    # --- what accelerators see ----------------------------------------------------------------------

    def components(self) -> dict[str, Any]:
        parts = {"transformer": self.pipe.transformer}
        for name in ("text_encoder", "text_encoder_2", "text_encoder_3"):
            if getattr(self.pipe, name, None) is not None:
                parts[name] = getattr(self.pipe, name)
        return parts

    def sensitive_modules(self) -> dict[str, tuple[str, ...]]:
        # the patch embedding and the last projection carry the most quantization error in DiTs
        return {
            "transformer": (
                "pos_embed*", "x_embedder", "patch_embedding", "proj_out", "norm_out*", "time_text_embed*",
                "condition_embedder*", "context_embedder",
            )
        }  # fmt: skip

    # --- requests -----------------------------------------------------------------------------------

    def use_student_info(self, info: dict[str, Any], source: Path) -> None:
        try:
            steps, sigmas = int(info["steps"]), [float(s) for s in info["sigmas"]]
            guidance = float(info.get("guidance", 1.0))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{source}: not a student record (needs 'steps' and 'sigmas')") from None
        self.student = {**info, "sigmas": sigmas}
        self.default_steps, self.default_guidance = steps, guidance

    def _sigmas(self, steps: int) -> list[float] | None:
        """A distilled student samples on its own grid (unshifted here: the scheduler applies the shift)."""
        if self.student is None or steps != int(self.student["steps"]):
            return None
        return list(self.student["sigmas"])

    def _check(self, request: GenerateRequest) -> tuple[int, int]:
        if request.references:
            raise InvalidRequestError(f"{self.family.pipeline} takes no reference images")
        if request.sampler not in (None, "diffusers"):
            raise InvalidRequestError(
                f"a diffusers pipeline samples with its own scheduler "
                f"({type(self.pipe.scheduler).__name__}); drop --sampler"
            )
        if request.negative_prompt and self.family.short == "flux":
            raise InvalidRequestError(
                "FluxPipeline ignores a negative prompt (its guidance is an input, not CFG); drop --negative"
            )
        if request.shift is not None:
            raise InvalidRequestError("a diffusers pipeline takes its shift from its scheduler; drop --shift")
        width = request.width or self.default_size[0]
        height = request.height or self.default_size[1]
        unit = int(getattr(self.pipe, "vae_scale_factor", 8)) * (2 if self.family.short == "flux" else 1)
        if self.family.short == "wan":
            unit = int(self.pipe.vae_scale_factor_spatial) * self.pipe.transformer.config.patch_size[1]
        elif self.family.short == "sd3":
            unit *= self.pipe.transformer.config.patch_size
        if width % unit or height % unit:
            raise InvalidRequestError(
                f"size {width}x{height} is not a multiple of {unit} for this {self.family.pipeline}; try "
                f"{max(unit, width // unit * unit)}x{max(unit, height // unit * unit)}"
            )
        return width, height

    def _call(self, request: GenerateRequest, progress: Progress | None, **extra: Any) -> tuple[Any, dict]:
        width, height = self._check(request)
        steps = request.steps or self.default_steps
        guidance = self.default_guidance if request.guidance is None else request.guidance
        generators = [torch.Generator("cpu").manual_seed(request.seed + i) for i in range(request.num_images)]
        kwargs: dict[str, Any] = dict(
            prompt=request.prompt, height=height, width=width, num_inference_steps=steps,
            guidance_scale=guidance, generator=generators, output_type="np", **extra,
        )  # fmt: skip
        kwargs["num_videos_per_prompt" if self.family.task == "t2v" else "num_images_per_prompt"] = len(
            generators
        )
        if request.negative_prompt:
            kwargs["negative_prompt"] = request.negative_prompt
        sigmas = self._sigmas(steps)
        if sigmas is not None and self.takes_sigmas:
            kwargs["sigmas"] = sigmas
        if progress is not None:

            def on_step(_pipe: Any, i: int, _t: Any, _kw: dict[str, Any]) -> dict[str, Any]:
                progress(i + 1, steps)
                return {}

            kwargs["callback_on_step_end"] = on_step
        with (
            torch.inference_mode(),
            _student_grid(self.pipe.scheduler, None if self.takes_sigmas else sigmas),
        ):
            out = self.pipe(**kwargs)
        settings = {
            "width": width, "height": height, "steps": steps, "guidance": guidance,
            "scheduler": type(self.pipe.scheduler).__name__, "pipeline": self.family.pipeline,
            "sigmas": sigmas, "student": None if self.student is None else self.student.get("name"),
        }  # fmt: skip
        return out, settings

    def generate(self, request: GenerateRequest, progress: Progress | None = None) -> GenerationResult:
        from PIL import Image

        start = time.perf_counter()
        out, settings = self._call(request, progress)
        images = [Image.fromarray((a * 255).round().clip(0, 255).astype("uint8")) for a in out.images]
        return GenerationResult(
            images, request, self.spec.name, list(self.accelerators),
            [request.seed + i for i in range(len(images))], settings, time.perf_counter() - start,
        )  # fmt: skip

    def video(self, request: VideoRequest, progress: Progress | None = None) -> GenerationResult:
        frames = request.frames or self.default_frames
        factor = int(self.pipe.vae_scale_factor_temporal)
        if (frames - 1) % factor:
            raise InvalidRequestError(
                f"{frames} frames: {self.family.pipeline} makes {factor}n + 1 frames; try "
                f"{(frames - 1) // factor * factor + 1}"
            )
        start = time.perf_counter()
        out, settings = self._call(request, progress, num_frames=frames)
        videos = [(v * 255).round().clip(0, 255).astype("uint8") for v in out.frames]
        settings.update(frames=frames, fps=request.fps or 16.0)
        return GenerationResult(
            [], request, self.spec.name, list(self.accelerators),
            [request.seed + i for i in range(len(videos))], settings, time.perf_counter() - start,
            videos=videos,
        )  # fmt: skip

    # --- distillation -------------------------------------------------------------------------------

    def distill_target(self, prompts: Any, size: tuple[int, int] | None = None) -> DistillTarget:
        from seed_diffusers.distill import DiffusersDistillTarget, ImageDistillTarget

        kind = DiffusersDistillTarget if self.family.task == "t2v" else ImageDistillTarget
        return kind(self, list(prompts), size or self.default_size)

    def load_student(self, directory: Path) -> dict[str, Any]:
        from seed_diffusers.distill import load_student

        return load_student(self, Path(directory))


@contextlib.contextmanager
def _student_grid(scheduler: Any, sigmas: list[float] | None) -> Iterator[None]:
    """Make the scheduler sample on `sigmas` whatever the pipeline asks: for pipelines whose call takes no
    `sigmas` (Wan)."""
    if sigmas is None:
        yield
        return
    original, own = scheduler.set_timesteps, sigmas

    # the pipelines inspect this signature for `sigmas`: name it
    def set_timesteps(
        num_inference_steps: Any = None,
        device: Any = None,
        sigmas: Any = None,
        timesteps: Any = None,
        **kw: Any,
    ) -> Any:
        return original(device=device, sigmas=own, **kw)

    previous = vars(scheduler).get("set_timesteps")  # restore exactly what was there (nesting)
    scheduler.set_timesteps = set_timesteps
    try:
        yield
    finally:
        if previous is None:
            del scheduler.set_timesteps
        else:
            scheduler.set_timesteps = previous
