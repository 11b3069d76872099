"""Seedream pipelines: text-to-image, instruction editing and multi-image reference in one model.

A model directory is self-describing:

    config.json    {"seed_model": ..., "dit": {...}, "vae": {...}, "text_encoder": {...}, "pipeline": {...}}
    dit.safetensors, vae.safetensors, text_encoder.safetensors (mini encoder)
    text_encoder/          (or a transformers encoder directory, with "text_encoder": {"kind": "hf"})

References and the edit source enter as extra latent tokens (their own RoPE index and role embedding);
several outputs are sampled in one batch, image i from seed + i.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from PIL import Image

from seed_core.attention import exact_attention
from seed_core.config import Config
from seed_core.errors import ConfigError, InvalidRequestError
from seed_core.files import check_writable
from seed_core.images import from_pil, load_image, to_pil
from seed_core.pipeline import Pipeline, Progress
from seed_core.registry import get_registry
from seed_core.requests import EditRequest, GenerateRequest, GenerationResult
from seed_core.samplers import cfg as cfg_combine
from seed_core.samplers import dual_cfg, flow_timesteps, resolution_shift
from seed_core.specs import LoadOptions, ModelSpec
from seed_core.weights import build_on_meta, load_component, save_safetensors
from seed_dit.config import TASKS, MMDiTConfig
from seed_dit.model import FLOATS, Conditioning, MMDiT
from seed_dit.text import HFTextEncoder, MiniTextEncoder, TextEmbeddings, TextEncoder
from seed_vae import Autoencoder, AutoencoderConfig

if TYPE_CHECKING:
    from seed_core.distill import DistillTarget


@dataclass(frozen=True)
class PipelineConfig(Config):
    default_steps: int = 28
    default_guidance: float = 4.5
    default_image_guidance: float = 1.5
    # an edit's text guidance when it differs from text-to-image's (None: `default_guidance`): a lower
    # scale can give more varied images at the same prompt accuracy while edits still need the higher one
    default_edit_guidance: float | None = None
    width: int = 64
    height: int = 64
    max_references: int = 3
    sampler: str = "euler"
    shift: float | None = None  # None: resolution-aware (Flux's rule)
    # with `shift`: the token count at which `shift` holds; the shift then grows with sqrt(tokens / this),
    # SD3's rule, which is how seed-mini's recipe trains its mixed resolutions
    shift_base_tokens: int | None = None
    # text-to-image larger than this side (pixels) is drawn as a draft whose longer side is this, upscaled,
    # noised back to `refine_from` and denoised at full size over the tail of the schedule, with the image
    # positions interpolated to the draft's span (a "hires fix": a model trained mostly small keeps its
    # composition). None: always sample at full size from the noise
    draft_side: int | None = None
    refine_from: float = 0.5
    # classifier-free guidance only for noise levels t in [low, high] (Kynkäänniemi et al. 2024: guidance
    # at the highest noise levels narrows the samples for little gain); the other steps take the
    # conditional prediction alone, one DiT call instead of one per branch
    guidance_interval: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        for name in ("default_steps", "width", "height"):
            if getattr(self, name) < 1:
                raise ConfigError(f"pipeline {name} must be >= 1, got {getattr(self, name)}")
        if self.shift is not None and self.shift <= 0:
            raise ConfigError(f"pipeline shift must be > 0, got {self.shift}")
        if (
            self.default_guidance < 0
            or self.default_image_guidance < 0
            or (self.default_edit_guidance or 0) < 0
        ):
            raise ConfigError(
                "pipeline default_guidance, default_image_guidance and default_edit_guidance must be >= 0"
            )
        if not 0.0 < self.refine_from < 1.0:
            raise ConfigError(f"pipeline refine_from must be in (0, 1), got {self.refine_from}")
        low, high = self.guidance_interval
        if not 0.0 <= low < high <= 1.0:
            raise ConfigError(f"pipeline guidance_interval must be [low, high] in [0, 1], got {low}, {high}")
        if self.draft_side is not None and self.draft_side <= 0:
            raise ConfigError(
                f"pipeline draft_side must be a positive number of pixels, got {self.draft_side}"
            )


def float_dtype(module: torch.nn.Module) -> torch.dtype:
    """The dtype of the module's first floating parameter (quantized layers hold integer codes)."""
    return next(p.dtype for p in module.parameters() if p.dtype in FLOATS)


#: layers that weight quantization keeps in the model's precision (`Pipeline.sensitive_modules`)
SENSITIVE_DIT = ("img_in", "final")
SENSITIVE_VAE: tuple[str, ...] = ()
SENSITIVE_TEXT: tuple[str, ...] = ()


class SeedreamPipeline(Pipeline):
    def __init__(
        self,
        spec: ModelSpec,
        dit: MMDiT,
        vae: Autoencoder,
        text_encoder: TextEncoder,
        config: PipelineConfig,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(spec)
        self.dit, self.vae, self.text_encoder, self.config = dit, vae, text_encoder, config
        self.device = torch.device(device)
        self.default_steps, self.default_guidance = config.default_steps, config.default_guidance
        self.default_size, self.default_sampler = (config.width, config.height), config.sampler
        if config.max_references > dit.cfg.max_references:
            raise ConfigError(
                f"pipeline max_references ({config.max_references}) exceeds the DiT's "
                f"({dit.cfg.max_references})"
            )

    def sampling_shift(self, tokens: int) -> float:
        """The default timestep shift for an image of `tokens` latent tokens."""
        cfg = self.config
        if cfg.shift is None:
            return resolution_shift(tokens)
        if cfg.shift_base_tokens:
            return cfg.shift * math.sqrt(tokens / cfg.shift_base_tokens)
        return cfg.shift

    def components(self) -> dict[str, Any]:
        return {"dit": self.dit, "vae": self.vae, "text_encoder": self.text_encoder}

    def sensitive_modules(self) -> dict[str, tuple[str, ...]]:
        # measured with benchmarks/quant.py --sensitivity: the layers where the stream enters and leaves
        # the latent space carry the largest error per byte saved
        return {"dit": SENSITIVE_DIT, "vae": SENSITIVE_VAE, "text_encoder": SENSITIVE_TEXT}

    @property
    def unit(self) -> int:
        """Image sides must be multiples of this (VAE factor x patch size)."""
        return self.vae.factor * self.dit.cfg.patch_size

    # --- saving and loading ------------------------------------------------------------------------

    def save_pretrained(self, path: str | Path, *, dtype: str = "float16", force: bool = False) -> None:
        path = Path(path)
        check_writable(path / "config.json", force)
        if not isinstance(self.text_encoder, MiniTextEncoder):
            raise ValueError(
                "save_pretrained writes mini text encoders only; point `text_encoder.path` at yours"
            )
        save_safetensors(self.dit.state_dict(), path / "dit.safetensors", dtype=dtype, force=force)
        save_safetensors(self.vae.state_dict(), path / "vae.safetensors", dtype=dtype, force=force)
        save_safetensors(
            self.text_encoder.state_dict(), path / "text_encoder.safetensors", dtype=dtype, force=force
        )
        config = {
            "seed_model": self.spec.name,
            "dit": self.dit.cfg.to_dict(),
            "vae": self.vae.cfg.to_dict(),
            "text_encoder": {"kind": "mini", **self.text_encoder.config},
            "pipeline": self.config.to_dict(),
        }
        from seed_core.files import atomic_write_bytes

        atomic_write_bytes(path / "config.json", (json.dumps(config, indent=2) + "\n").encode(), force=True)

    @classmethod
    def from_pretrained(cls, spec: ModelSpec, path: str | Path, options: LoadOptions) -> SeedreamPipeline:
        path = Path(path)
        try:
            config = json.loads((path / "config.json").read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no config.json; not a Seedream model directory") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path / 'config.json'}: not valid JSON ({exc.msg})") from None
        file = path / "config.json"
        if not isinstance(config, dict):
            raise ConfigError(f"{file}: expected a JSON object with dit, vae and text_encoder sections")
        for key in ("dit", "vae", "text_encoder"):
            if key not in config:
                raise ConfigError(f"{file}: missing the '{key}' section")
        for key, section in config.items():
            if key in ("dit", "vae", "text_encoder", "pipeline") and not isinstance(section, dict):
                raise ConfigError(f"{file}: the '{key}' section must be an object, got {section!r}")
        te_cfg = dict(config["text_encoder"])
        kind = te_cfg.pop("kind", "mini")
        if kind not in ("mini", "hf"):  # check the whole config before reading any weights
            raise ConfigError(f"{file}: unknown text_encoder kind '{kind}' (mini or hf)")
        section = "dit"
        try:  # a value the dataclasses take but the networks cannot be built from is the config's fault
            dit_cfg = MMDiTConfig.from_dict(config["dit"])
            dit_net = build_on_meta(lambda: MMDiT(dit_cfg))
            section = "vae"
            vae_cfg = AutoencoderConfig.from_dict(config["vae"])
            vae_net = build_on_meta(lambda: Autoencoder(vae_cfg))
            section = "pipeline"
            pipe_cfg = PipelineConfig.from_dict(config.get("pipeline", {}))
            section = "text_encoder"
            te_net = build_on_meta(lambda: MiniTextEncoder(**te_cfg)) if kind == "mini" else None
        except ConfigError as exc:
            raise ConfigError(f"{file}: {exc}") from None
        except (ValueError, TypeError, ZeroDivisionError, RuntimeError, AssertionError) as exc:
            raise ConfigError(f"{file}: the '{section}' section does not make a model ({exc})") from None
        dtype = options.dtype
        # load_component also restores files that `seed quantize` wrote, without quantizing again
        dit = load_component(dit_net, path / "dit.safetensors", dtype=dtype)
        vae = load_component(vae_net, path / "vae.safetensors", dtype=dtype)
        text_encoder: Any
        if te_net is not None:
            text_encoder = load_component(te_net, path / "text_encoder.safetensors", dtype=dtype)
        else:
            text_encoder = HFTextEncoder.from_pretrained(
                path / te_cfg.get("path", "text_encoder"), dtype=getattr(torch, dtype)
            )
        if text_encoder.dim != dit_cfg.text_dim or text_encoder.pooled_dim != dit_cfg.pooled_dim:
            raise ConfigError(
                f"{path}: text encoder width {text_encoder.dim} does not match the DiT's text_dim "
                f"{dit_cfg.text_dim}"
            )
        device = options.device
        return cls(
            spec,
            dit.to(device).eval(),
            vae.to(device).eval(),
            text_encoder.to(device).eval(),
            pipe_cfg,
            device,
        )

    # --- distillation ------------------------------------------------------------------------------

    def distill_target(self, prompts: Sequence[str], size: tuple[int, int] | None = None) -> DistillTarget:
        from seed_dit.distill import SeedreamDistillTarget

        return SeedreamDistillTarget(self, prompts, size or (self.config.width, self.config.height))

    def load_student(self, directory: Path) -> dict[str, Any]:
        """Use a distilled student: its DiT replaces the teacher's, and its steps, shift, guidance and (when
        student.json has one) edit image guidance become the defaults (a request can still override them)."""
        from seed_dit.distill import load_student

        dtype = self.dit.compute_dtype
        dit, info = load_student(Path(directory), dtype, self.device, self.source)
        if dit.cfg.hidden != self.dit.cfg.hidden or dit.cfg.in_channels != self.dit.cfg.in_channels:
            raise ConfigError(f"{directory}: the student was distilled from a different backbone")
        try:  # the student's settings go through the config's checks: a bad student.json is one line
            self.config = self._student_config(info)
        except (ConfigError, ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"{Path(directory) / 'student.json'}: {exc}") from None
        self.dit = dit
        self.default_steps, self.default_guidance = self.config.default_steps, self.config.default_guidance
        return info

    def _student_config(self, info: dict[str, Any]) -> PipelineConfig:
        return dataclasses.replace(
            self.config,
            default_steps=int(info["steps"]),
            default_guidance=float(info.get("guidance", 1.0)),
            # a student may keep its own edit image guidance (one made without edits samples them best at
            # the scale it was measured at)
            default_image_guidance=float(info.get("image_guidance", self.config.default_image_guidance)),
            # a student edits at its own scale: the one it was distilled at, recorded when it differs
            default_edit_guidance=float(info["edit_guidance"]) if "edit_guidance" in info else None,
            shift=float(info["shift"]) if "shift" in info else self.config.shift,
            shift_base_tokens=None if "shift" in info else self.config.shift_base_tokens,
            # a student's few steps were measured with guidance at each of them (the teacher's interval
            # would drop the first one)
            guidance_interval=tuple(info.get("guidance_interval", (0.0, 1.0))),
            sampler="euler",
        )

    # --- requests ----------------------------------------------------------------------------------

    @property
    def edit_guidance(self) -> float:
        """The text guidance of an edit when the request names none."""
        edit = self.config.default_edit_guidance
        return self.config.default_guidance if edit is None else edit

    def _size(self, request: GenerateRequest) -> tuple[int, int]:
        width = request.width or self.config.width
        height = request.height or self.config.height
        unit = self.unit
        if width % unit or height % unit:
            raise InvalidRequestError(
                f"size {width}x{height} is not a multiple of {unit} (this model's VAE factor x patch size); "
                f"try {max(unit, width // unit * unit)}x{max(unit, height // unit * unit)}"
            )
        return width, height

    def _check_references(self, count: int) -> None:
        if count > self.config.max_references:
            raise InvalidRequestError(
                f"{count} reference images given; model '{self.spec.name}' takes at most "
                f"{self.config.max_references}"
            )

    def _encode_images(self, images: list[Image.Image], width: int, height: int) -> torch.Tensor:
        """PIL images, resized to (width, height) -> model latents (N, C, h, w)."""
        pixels = torch.stack(
            [from_pil(im.resize((width, height), Image.Resampling.BICUBIC)) for im in images]
        )
        vae_dtype = float_dtype(self.vae)
        return self.vae.encode(pixels.to(self.device, vae_dtype) * 2 - 1).float()

    def _text(self, prompts: list[str]) -> TextEmbeddings:
        return self.text_encoder.encode(prompts, device=self.device)

    def _draft_size(
        self, request: GenerateRequest, size: tuple[int, int], task: str
    ) -> tuple[int, int] | None:
        """The draft's size for this request, or None to sample at full size."""
        side = self.config.draft_side
        if request.draft and not side:
            raise InvalidRequestError(
                f"model '{self.spec.name}' has no draft size; drop --draft (or set pipeline.draft_side)"
            )
        if request.draft is False or not side or task != "generate" or max(size) <= side:
            return None
        unit, longer = self.unit, max(size)
        return (
            max(unit, round(size[0] * side / longer / unit) * unit),
            max(unit, round(size[1] * side / longer / unit) * unit),
        )

    def _shift(self, request: GenerateRequest, size: tuple[int, int]) -> float:
        return request.shift or self.sampling_shift((size[0] // self.unit) * (size[1] // self.unit))

    def _sample(
        self,
        request: GenerateRequest,
        size: tuple[int, int],
        branches: list[tuple[TextEmbeddings, tuple[torch.Tensor, ...]]],
        combine: Any,
        task: str,
        progress: Progress | None,
        embedded_guidance: float | None = None,
    ) -> GenerationResult:
        """Sample `num_images` latents with one DiT call per step over all guidance branches, directly or
        as a draft and its refine (`PipelineConfig.draft_side`)."""
        start = time.perf_counter()
        width, height = size
        n = request.num_images
        steps = request.steps or self.config.default_steps
        sampler_name = request.sampler or self.config.sampler
        sampler = get_registry().samplers.get(sampler_name).factory()
        dtype = self.dit.compute_dtype
        seeds = [request.seed + i for i in range(n)]
        # image i's noise (the draft's, then the refine's) comes from its own generator: seed + i alone
        # reproduces it
        generators = [torch.Generator().manual_seed(s) for s in seeds]

        k = len(branches)  # rows: branch-major, each branch repeated for the n images
        text = torch.cat([b[0].tokens.expand(n, -1, -1) for b in branches]).to(dtype)
        mask = torch.cat([b[0].mask.expand(n, -1) for b in branches])
        pooled = torch.cat([b[0].pooled.expand(n, -1) for b in branches]).to(dtype)
        refs = tuple(
            torch.cat([b[1][i].expand(n, -1, -1, -1) for b in branches]).to(dtype)
            for i in range(len(branches[0][1]))
        )
        cond = Conditioning(
            text, mask, pooled, torch.full((k * n,), TASKS[task], device=self.device), references=refs
        )
        if embedded_guidance is not None:  # a guidance-distilled student takes the scale as an input
            cond.guidance = torch.full((k * n,), embedded_guidance, device=self.device)
        low, high = request.guidance_interval or self.config.guidance_interval
        everywhere = (low, high) == (0.0, 1.0)  # then no step reads t on the host (a GPU sync)

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if k > 1 and not everywhere and not low <= float(t[0]) <= high:  # the first branch alone
                alone = dataclasses.replace(
                    cond, text=text[:n], text_mask=mask[:n], pooled=pooled[:n], task=cond.task[:n],
                    references=tuple(r[:n] for r in refs),
                )  # fmt: skip
                out = self.dit(x.to(dtype), t.to(dtype), alone)
                assert isinstance(out, torch.Tensor)
                return out.float()
            out = self.dit(x.to(dtype).repeat(k, 1, 1, 1), t.to(dtype).repeat(k), cond)
            assert isinstance(out, torch.Tensor)
            return combine(*out.float().chunk(k))

        def noise(side: tuple[int, int]) -> torch.Tensor:  # (n, C, h, w), float32 whatever the model's dtype
            shape = (1, self.dit.cfg.in_channels, side[1] // self.vae.factor, side[0] // self.vae.factor)
            return torch.cat([torch.randn(shape, generator=g) for g in generators]).to(self.device)

        draft = self._draft_size(request, size, task)
        shift = self._shift(request, size)
        grid = flow_timesteps(steps, shift, device=self.device)
        settings: dict[str, Any] = {"width": width, "height": height, "steps": steps, "sampler": sampler_name}
        if k > 1:
            settings["guidance_interval"] = [low, high]
        t0 = self.config.refine_from
        tail = torch.cat((grid.new_tensor([t0]), grid[grid < t0]))  # a refine: the grid below t0, from t0
        total = steps + (len(tail) - 1 if draft else 0)

        def report(done: int) -> Any:
            return (lambda i, _n, _t, _x: progress(done + i + 1, total)) if progress else None

        vae_dtype = float_dtype(self.vae)
        with torch.no_grad():
            if draft is None:
                latents = sampler.sample(velocity, noise(size), grid, report(0))
            else:
                draft_shift = self._shift(request, draft)
                settings.update(
                    draft=list(draft), draft_shift=round(draft_shift, 4), refine_from=t0,
                    refine_steps=len(tail) - 1,
                )  # fmt: skip
                draft_grid = flow_timesteps(steps, draft_shift, device=self.device)
                with exact_attention(self.dit):  # attention plans (PARO) are made for the full size
                    latents = sampler.sample(velocity, noise(draft), draft_grid, report(0))
                up = F.interpolate(
                    self.vae.decode(latents.to(vae_dtype)).float(), size=(height, width), mode="bicubic"
                ).clamp(-1, 1)
                x = (1 - t0) * self.vae.encode(up.to(vae_dtype)).float() + t0 * noise(size)
                cond.position_scale = max(draft) / max(size)
                latents = sampler.sample(velocity, x, tail, report(steps))
            pixels = self.vae.decode(latents.to(vae_dtype))
        images = [to_pil((p.float() + 1) / 2) for p in pixels]
        settings.update(shift=round(shift, 4), task=task)
        return GenerationResult(
            images,
            request,
            self.spec.name,
            list(self.accelerators),
            seeds,
            settings,
            time.perf_counter() - start,
        )

    def generate(self, request: GenerateRequest, progress: Progress | None = None) -> GenerationResult:
        size = self._size(request)
        self._check_references(len(request.references))
        guidance = self.config.default_guidance if request.guidance is None else request.guidance
        task = "compose" if request.references else "generate"
        refs: tuple[torch.Tensor, ...] = ()
        if request.references:
            latents = self._encode_images([load_image(p) for p in request.references], *size)
            refs = tuple(latents[i : i + 1] for i in range(len(request.references)))
        cond = self._text([request.prompt])
        if self.dit.guidance_in is not None:
            result = self._sample(request, size, [(cond, refs)], lambda v: v, task, progress, guidance)
        elif guidance == 1.0:  # no guidance: skip the unconditional branch
            result = self._sample(request, size, [(cond, refs)], lambda v: v, task, progress)
        else:
            uncond = self._text([request.negative_prompt])
            result = self._sample(
                request,
                size,
                [(cond, refs), (uncond, refs)],
                lambda c, u: cfg_combine(c, u, guidance),
                task,
                progress,
            )
        result.settings["guidance"] = guidance  # the scale used, the model's default included
        return result

    def edit(self, request: EditRequest, progress: Progress | None = None) -> GenerationResult:
        source = load_image(request.image)
        self._check_references(1 + len(request.references))
        unit = self.unit
        if request.width or request.height:
            size = self._size(request)
        else:  # the source's size, rounded down to what the model needs
            size = (max(unit, source.width // unit * unit), max(unit, source.height // unit * unit))
        text_scale = self.edit_guidance if request.guidance is None else request.guidance
        image_scale = (
            self.config.default_image_guidance if request.image_guidance is None else request.image_guidance
        )
        images = [source] + [load_image(p) for p in request.references]
        latents = self._encode_images(images, *size)
        refs = tuple(latents[i : i + 1] for i in range(len(images)))
        full, empty = self._text([request.prompt]), self._text([""])
        # the unconditional branch sees zero latents in place of the images (InstructPix2Pix's null image)
        branches = [(full, refs), (empty, refs), (empty, tuple(torch.zeros_like(r) for r in refs))]
        result = self._sample(
            request,
            size,
            branches,
            lambda f, i, u: dual_cfg(f, i, u, text_scale, image_scale),
            "edit",
            progress,
        )
        result.settings.update(guidance=text_scale, image_guidance=image_scale)
        return result


def random_pipeline(
    spec: ModelSpec,
    options: LoadOptions,
    dit_preset: str = "tiny",
    vae_preset: str = "tiny-f8",
    seed: int = 0,
) -> SeedreamPipeline:
    """A pipeline with random weights (seeded): for tests and for trying the plumbing, not for pictures."""
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's global RNG
        torch.manual_seed(seed)
        return _random_pipeline(spec, options, dit_preset, vae_preset)


def _random_pipeline(
    spec: ModelSpec, options: LoadOptions, dit_preset: str, vae_preset: str
) -> SeedreamPipeline:
    dit_cfg = MMDiTConfig.preset(dit_preset)
    dit = MMDiT(dit_cfg)
    with torch.no_grad():  # leave adaLN-Zero so that the random network actually does something
        for p in dit.parameters():
            if p.ndim >= 2 and float(p.abs().sum()) == 0.0:
                p.normal_(std=0.02)
    vae = Autoencoder(AutoencoderConfig.preset(vae_preset))
    encoder = MiniTextEncoder(dim=dit_cfg.text_dim, layers=1, heads=2)
    config = PipelineConfig(
        default_steps=4,
        default_guidance=3.0,
        width=64,
        height=64,
        max_references=min(3, dit_cfg.max_references),
    )
    dtype = getattr(torch, options.dtype)
    return SeedreamPipeline(
        spec,
        dit.to(options.device, dtype).eval(),
        vae.to(options.device, dtype).eval(),
        encoder.to(options.device, dtype).eval(),
        config,
        options.device,
    )


def parameter_counts(dit_preset: str, vae_preset: str) -> dict[str, Any]:
    """Parameter counts of a DiT and VAE preset, built on the meta device (no memory, instant)."""
    from seed_core.weights import count_parameters, human_count

    dit = build_on_meta(lambda: MMDiT(MMDiTConfig.preset(dit_preset)))
    vae = build_on_meta(lambda: Autoencoder(AutoencoderConfig.preset(vae_preset)))
    n_dit, n_vae = count_parameters(dit), count_parameters(vae)
    return {
        "dit": human_count(n_dit),
        "vae": human_count(n_vae),
        "dit_params": n_dit,
        "vae_params": n_vae,
        "vae_factor": vae.factor,
        "dit_preset": dit_preset,
        "vae_preset": vae_preset,
    }


__all__ = ["PipelineConfig", "SeedreamPipeline", "parameter_counts", "random_pipeline"]
