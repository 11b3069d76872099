"""Autoencoder configs: spatial factor, latent channels and widths, with named presets."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from seed_core.config import Config


@dataclass(frozen=True)
class AutoencoderConfig(Config):
    """An image autoencoder that maps (3, H, W) pixels to (latent_channels, H / factor, W / factor).

    `channels` gives the width at each resolution level, from full resolution down; there are
    log2(factor) downsamplings, so `len(channels) == log2(factor) + 1`. `shortcuts` adds DC-AE-style
    residual space-to-channel shortcuts around every resolution change and around the latent bottleneck;
    they are what keeps 16x and 32x compression as easy to train as 8x. `kl` gives a diagonal Gaussian
    posterior (else a plain deterministic latent). Model latents are `(z - shift_factor) * scaling_factor`.
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny-f8": {"factor": 8, "latent_channels": 4, "channels": (16, 32, 32, 64)},
        "tiny-f32": {"factor": 32, "latent_channels": 32, "channels": (8, 16, 32, 32, 64, 64)},
        # seed-mini: 64x64 images -> 16x16x8 latents (at f8, small shapes lost their corners)
        "mini-f4": {"factor": 4, "latent_channels": 8, "channels": (32, 64, 128), "blocks": 1},
        # Seedream-scale high-compression autoencoders (no public weights: sizes for planning / meta builds)
        "f16c32": {"factor": 16, "latent_channels": 32, "channels": (128, 256, 512, 512, 512), "blocks": 2},
        "f32c64": {
            "factor": 32,
            "latent_channels": 64,
            "channels": (128, 256, 512, 512, 1024, 1024),
            "blocks": 2,
        },
    }

    factor: int = 8
    latent_channels: int = 4
    channels: tuple[int, ...] = (64, 128, 256, 256)
    blocks: int = 1  # residual blocks per level
    image_channels: int = 3
    shortcuts: bool = True
    kl: bool = True
    scaling_factor: float = 1.0
    shift_factor: float = 0.0

    def __post_init__(self) -> None:
        levels = math.log2(self.factor)
        if self.factor < 1 or levels != int(levels):
            raise ValueError(f"factor must be a power of two, got {self.factor}")
        if len(self.channels) != int(levels) + 1:
            raise ValueError(
                f"factor {self.factor} needs {int(levels) + 1} channel widths (one per level), "
                f"got {len(self.channels)}"
            )
