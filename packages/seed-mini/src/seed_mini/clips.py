"""Moving shapes clips and their degradations: the restoration pairs seedvr2-mini learns from.

A clip is one scene seen through a panning camera (every object moves by the same offset per frame, so
objects never overlap and `world.render_batch` composites them exactly). A degraded copy goes through
what real low-quality video goes through, with one set of parameters per clip: Gaussian blur, downscaling,
sensor noise and JPEG compression, then bicubic upscaling back to the clean size; that upscaled copy is
both the restorer's input and the baseline its PSNR gain is measured against.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from seed_mini import world


@dataclass(frozen=True)
class Degradation:
    blur: float  # Gaussian sigma in pixels of the clean clip
    scale: int  # downscaling factor
    noise: float  # std of additive Gaussian noise at the low resolution, pixel values in [0, 1]
    quality: int  # JPEG quality of each low-resolution frame

    @classmethod
    def sample(cls, rng: random.Random) -> Degradation:
        return cls(
            blur=rng.uniform(0.3, 1.5),
            scale=rng.choice((2, 3, 4)),
            noise=rng.uniform(0.0, 0.04),
            quality=rng.randint(30, 85),
        )


def sample_clip(rng: random.Random, frames: int) -> list[world.Scene]:
    """A scene per frame: a random scene panned by up to 2.5% of the image side per frame."""
    scene = world.sample_scene(rng)
    angle, speed = rng.uniform(0, 2 * math.pi), rng.uniform(0.0, 0.025)
    dx, dy = speed * math.cos(angle), speed * math.sin(angle)
    return [
        replace(scene, objects=tuple(replace(o, x=o.x + i * dx, y=o.y + i * dy) for o in scene.objects))
        for i in range(frames)
    ]


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, C, H, W) blurred with a separable Gaussian, reflect padding."""
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=x.dtype) / sigma) ** 2)
    taps = taps / taps.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, taps.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _jpeg(frame: torch.Tensor, quality: int) -> torch.Tensor:
    """(3, H, W) in [0, 1] through a JPEG round trip."""
    import numpy as np
    from PIL import Image

    array = (frame.permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    decoded = torch.from_numpy(np.asarray(Image.open(buffer).convert("RGB")).copy())
    return decoded.permute(2, 0, 1).float() / 255


def degrade(clip: torch.Tensor, d: Degradation, generator: torch.Generator | None = None) -> torch.Tensor:
    """(T, 3, H, W) in [0, 1] -> the degraded clip upscaled back to (T, 3, H, W) with bicubic."""
    h, w = clip.shape[-2:]
    x = _gaussian_blur(clip, d.blur)
    low = F.interpolate(x, size=(h // d.scale, w // d.scale), mode="area")
    low = low + d.noise * torch.randn(low.shape, generator=generator)
    low = torch.stack([_jpeg(f, d.quality) for f in low.clamp(0, 1)])
    up = F.interpolate(low, size=(h, w), mode="bicubic", align_corners=False)
    return up.clamp(0, 1)


def _rendered(rng: random.Random, batch: int, frames: int, size: int) -> torch.Tensor:
    """(B, T, 3, S, S) clean clips in [0, 1]."""
    scenes = [sample_clip(rng, frames) for _ in range(batch)]
    flat = world.render_batch([s for clip in scenes for s in clip], size)
    return flat.view(batch, frames, 3, size, size)


def _crop(clips: list[torch.Tensor], rng: random.Random, crop: int | None) -> list[torch.Tensor]:
    """The same random square of side `crop` from each clip of every list entry (B, T, 3, S, S)."""
    size = clips[0].shape[-1]
    if crop is None or crop >= size:
        return clips
    corners = [(rng.randrange(size - crop + 1), rng.randrange(size - crop + 1)) for _ in clips[0]]
    return [
        torch.stack([c[..., y : y + crop, x : x + crop] for c, (y, x) in zip(batch, corners, strict=True)])
        for batch in clips
    ]


def clip_batch(
    seed: int, step: int, batch: int, frames: int, size: int = 64, crop: int | None = None
) -> torch.Tensor:
    """Clean clips (B, 3, T, S, S) in [-1, 1], a pure function of (seed, step); `crop`: a random square
    of that side from each clip."""
    rng = random.Random(seed * 1_000_003 + step)
    (clean,) = _crop([_rendered(rng, batch, frames, size)], rng, crop)
    return clean.transpose(1, 2) * 2 - 1


def restoration_batch(
    seed: int, step: int, batch: int, frames: int, size: int = 64, crop: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean, degraded), each (B, 3, T, S, S) in [-1, 1]; a pure function of (seed, step)."""
    rng = random.Random(seed * 1_000_003 + step)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    clean = _rendered(rng, batch, frames, size)
    degraded = torch.stack([degrade(c, Degradation.sample(rng), generator) for c in clean])
    clean, degraded = _crop([clean, degraded], rng, crop)
    # (B, T, 3, S, S) -> (B, 3, T, S, S) in [-1, 1]
    return clean.transpose(1, 2) * 2 - 1, degraded.transpose(1, 2) * 2 - 1


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two tensors in [-1, 1]."""
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)
