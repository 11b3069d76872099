"""A toy model that goes through the whole Seed request flow in milliseconds.

The "backbone" is a 1x1 colour mixer (identity unless weights say otherwise) applied to the exact
flow-matching velocity toward a Gaussian around an image chosen by the prompt: a vertical gradient in the
colour the prompt names, with a grain that depends on the seed.
It is a real pipeline for the core's machinery (sampler, guidance, weights, accelerators, image metadata),
not a generative model.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seed_core.errors import InvalidRequestError
from seed_core.images import from_pil, load_image, to_pil
from seed_core.pipeline import Pipeline, Progress
from seed_core.registry import get_registry
from seed_core.requests import EditRequest, GenerateRequest, GenerationResult
from seed_core.samplers import StepCallback, Velocity, cfg, dual_cfg, flow_timesteps
from seed_core.specs import LoadOptions, ModelSpec
from seed_core.weights import build_on_meta, load_into, read_state_dict

COLOURS = {
    "red": (0.9, 0.1, 0.1),
    "green": (0.1, 0.8, 0.2),
    "blue": (0.1, 0.2, 0.9),
    "yellow": (0.95, 0.85, 0.1),
    "purple": (0.6, 0.2, 0.8),
    "orange": (1.0, 0.55, 0.0),
    "white": (0.95, 0.95, 0.95),
    "black": (0.05, 0.05, 0.05),
}
GREY = (0.5, 0.5, 0.5)


def prompt_colour(prompt: str) -> tuple[float, float, float]:
    """The first colour word in the prompt, else a colour hashed from it."""
    for word in prompt.lower().replace(",", " ").split():
        if word in COLOURS:
            return COLOURS[word]
    digest = hashlib.sha256(prompt.encode()).digest()
    return (digest[0] / 255, digest[1] / 255, digest[2] / 255)


class ColourMixer(nn.Module):
    """(B, 3, H, W) -> (B, 3, H, W): a learnable 3x3 colour transform."""

    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Conv2d(3, 3, kernel_size=1)

    def reset_identity(self) -> None:
        with torch.no_grad():
            self.mix.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.mix.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x)


def _gradient(colour: tuple[float, float, float], height: int, width: int) -> torch.Tensor:
    """(3, H, W) in [-1, 1]: `colour` at the top fading to a darker shade at the bottom."""
    c = torch.tensor(colour).view(3, 1, 1)
    ramp = torch.linspace(1.0, 0.4, height).view(1, height, 1)
    return (c * ramp).expand(3, height, width) * 2 - 1


class ToyPipeline(Pipeline):
    default_steps = 8
    default_guidance = 1.0
    default_size = (64, 64)
    default_sampler = "euler"

    def __init__(self, spec: ModelSpec, mixer: ColourMixer) -> None:
        super().__init__(spec)
        self.mixer = mixer
        self.step_factor = 1

    @classmethod
    def load(cls, spec: ModelSpec, options: LoadOptions) -> ToyPipeline:
        weights = options.weights or spec.weights
        if weights is None:
            mixer = ColourMixer()
            mixer.reset_identity()
        else:
            path = Path(weights)
            state = read_state_dict(
                path / "model.safetensors" if path.is_dir() else path, dtype=options.dtype
            )
            mixer = build_on_meta(ColourMixer)
            load_into(mixer, state, source=str(path))
        return cls(spec, mixer.to(options.device).eval())

    def components(self) -> dict[str, Any]:
        return {"backbone": self.mixer}

    def _velocity(self, mean: torch.Tensor, grain: float = 0.08) -> Velocity:
        """Exact velocity toward data ~ N(mean, grain^2) per pixel: x_t ~ N((1-t) mean, sd_t^2)."""

        weight = self.mixer.mix.weight
        mean = mean.to(weight.device)

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            t = t.view(-1, 1, 1, 1)
            sd = torch.sqrt((1 - t) ** 2 * grain**2 + t**2)
            d_sd = ((t - 1) * grain**2 + t) / sd
            v = -mean + d_sd / sd * (x - (1 - t) * mean)
            return self.mixer(v.to(weight.dtype)).to(x.dtype)  # the ODE itself stays in float32

        return velocity

    def _sample(
        self,
        request: GenerateRequest,
        make_velocity: Any,
        progress: Progress | None,
        size: tuple[int, int] | None = None,
    ) -> GenerationResult:
        start = time.perf_counter()
        width, height = size or self.default_size
        width, height = request.width or width, request.height or height
        steps = max(1, (request.steps or self.default_steps) // self.step_factor)
        sampler_name = request.sampler or self.default_sampler
        sampler = get_registry().samplers.get(sampler_name).factory()
        callback: StepCallback | None = (lambda i, n, t, x: progress(i + 1, n)) if progress else None
        images, seeds = [], []
        with torch.no_grad():
            for i in range(request.num_images):
                seed = request.seed + i
                noise = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(seed))
                noise = noise.to(self.mixer.mix.weight.device)
                times = flow_timesteps(steps, request.shift or 1.0, device=noise.device)
                x = sampler.sample(make_velocity(height, width), noise, times, callback)
                images.append(to_pil((x[0] + 1) / 2))
                seeds.append(seed)
        settings = {
            "width": width,
            "height": height,
            "steps": steps,
            "sampler": sampler_name,
            "shift": request.shift or 1.0,
        }
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
        scale = self.default_guidance if request.guidance is None else request.guidance

        def make_velocity(h: int, w: int) -> Velocity:
            cond = self._velocity(_gradient(prompt_colour(request.prompt), h, w))
            uncond = self._velocity(_gradient(GREY, h, w))
            return lambda x, t: cfg(cond(x, t), uncond(x, t), scale)

        return self._sample(request, make_velocity, progress)

    def edit(self, request: EditRequest, progress: Progress | None = None) -> GenerationResult:
        source = load_image(request.image)
        text_scale = self.default_guidance if request.guidance is None else request.guidance
        image_scale = 1.0 if request.image_guidance is None else request.image_guidance

        def make_velocity(h: int, w: int) -> Velocity:
            src = from_pil(source.resize((w, h))) * 2 - 1
            full = self._velocity(0.5 * src + 0.5 * _gradient(prompt_colour(request.prompt), h, w))
            image_only = self._velocity(src)
            uncond = self._velocity(_gradient(GREY, h, w))
            return lambda x, t: dual_cfg(full(x, t), image_only(x, t), uncond(x, t), text_scale, image_scale)

        return self._sample(request, make_velocity, progress, size=source.size)


def divide_steps(pipeline: Pipeline, factor: int) -> Pipeline:
    if factor < 1:
        raise InvalidRequestError(f"toy-fewer-steps: factor must be >= 1, got {factor}")
    if not isinstance(pipeline, ToyPipeline):
        raise InvalidRequestError("toy-fewer-steps only applies to the toy pipeline")
    pipeline.step_factor = factor
    return pipeline


class FlowMatchMidpoint:
    """Explicit midpoint rule: 2nd order, 2 model calls per step."""

    order = 2

    def sample(
        self,
        velocity: Velocity,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        callback: StepCallback | None = None,
    ) -> torch.Tensor:
        n = len(timesteps) - 1
        for i in range(n):
            t, t_next = timesteps[i], timesteps[i + 1]
            dt = (t_next - t).to(x.dtype)
            half = x + 0.5 * dt * velocity(x, t.expand(x.shape[0]))
            x = x + dt * velocity(half, (t + 0.5 * (t_next - t)).expand(x.shape[0]))
            if callback:
                callback(i, n, float(t_next), x)
        return x
