"""Image autoencoder with residual space-to-channel shortcuts (DC-AE style), read top to bottom.

Norms are per-pixel RMS norms over channels and there is no attention, so the network is a local operator:
tiles decoded with enough context are exact (see tiling.py). Pixels are in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seed_vae.config import AutoencoderConfig


class ChannelRMSNorm(nn.Module):
    """RMS norm over channels at each pixel: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rms = x.float().pow(2).mean(dim=1, keepdim=True).add(self.eps).rsqrt()
        return (x.float() * rms).to(x.dtype) * self.weight.view(1, -1, 1, 1)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = ChannelRMSNorm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = ChannelRMSNorm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


def space_to_channel(x: torch.Tensor, c_out: int, factor: int = 2) -> torch.Tensor:
    """Parameter-free shortcut: (B, C, H, W) -> (B, c_out, H / f, W / f) by pixel-unshuffle, then averaging
    groups of channels (or repeating them) to reach c_out."""
    x = F.pixel_unshuffle(x, factor)
    b, c, h, w = x.shape
    if c >= c_out:
        return x.view(b, c_out, c // c_out, h, w).mean(dim=2)
    return x.repeat_interleave(c_out // c, dim=1)


def channel_to_space(x: torch.Tensor, c_out: int, factor: int = 2) -> torch.Tensor:
    """Inverse shortcut: (B, C, H, W) -> (B, c_out, H * f, W * f) by repeating or averaging channels to
    c_out * f^2, then pixel-shuffle."""
    b, c, h, w = x.shape
    need = c_out * factor * factor
    x = x.repeat_interleave(need // c, dim=1) if need >= c else x.view(b, need, c // need, h, w).mean(dim=2)
    return F.pixel_shuffle(x, factor)


class Downsample(nn.Module):
    def __init__(self, c_in: int, c_out: int, shortcut: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
        self.c_out, self.shortcut = c_out, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return out + space_to_channel(x, self.c_out) if self.shortcut else out


class Upsample(nn.Module):
    def __init__(self, c_in: int, c_out: int, shortcut: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.c_out, self.shortcut = c_out, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return out + channel_to_space(x, self.c_out) if self.shortcut else out


class Encoder(nn.Module):
    """(B, 3, H, W) -> (B, 2 * latent or latent, H / f, W / f)."""

    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        ch = cfg.channels
        self.conv_in = nn.Conv2d(cfg.image_channels, ch[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i, c in enumerate(ch):
            layers += [ResBlock(c, c) for _ in range(cfg.blocks)]
            if i < len(ch) - 1:
                layers.append(Downsample(c, ch[i + 1], cfg.shortcuts))
        self.down = nn.Sequential(*layers)
        self.mid = ResBlock(ch[-1], ch[-1])
        self.norm_out = ChannelRMSNorm(ch[-1])
        self.out_channels = cfg.latent_channels * (2 if cfg.kl else 1)
        self.conv_out = nn.Conv2d(ch[-1], self.out_channels, 3, padding=1)
        self.shortcut = cfg.shortcuts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)  # oneDNN convs are far faster on CPU in NHWC
        h = self.mid(self.down(self.conv_in(x)))
        out = self.conv_out(F.silu(self.norm_out(h)))
        if self.shortcut:  # the latent is a residual over an average of the deepest features
            b, c, hh, ww = h.shape
            groups = c // self.out_channels if c % self.out_channels == 0 else None
            if groups:
                out = out + h.view(b, self.out_channels, groups, hh, ww).mean(dim=2)
        return out


class Decoder(nn.Module):
    """(B, latent, h, w) -> (B, 3, h * f, w * f)."""

    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        ch = cfg.channels[::-1]
        self.conv_in = nn.Conv2d(cfg.latent_channels, ch[0], 3, padding=1)
        self.mid = ResBlock(ch[0], ch[0])
        layers: list[nn.Module] = []
        for i, c in enumerate(ch):
            layers += [ResBlock(c, c) for _ in range(cfg.blocks)]
            if i < len(ch) - 1:
                layers.append(Upsample(c, ch[i + 1], cfg.shortcuts))
        self.up = nn.Sequential(*layers)
        self.norm_out = ChannelRMSNorm(ch[-1])
        self.conv_out = nn.Conv2d(ch[-1], cfg.image_channels, 3, padding=1)
        self.shortcut, self.width = cfg.shortcuts, ch[0]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z.contiguous(memory_format=torch.channels_last)
        h = self.conv_in(z)
        if self.shortcut and self.width % z.shape[1] == 0:
            h = h + z.repeat_interleave(self.width // z.shape[1], dim=1)
        h = self.up(self.mid(h))
        return self.conv_out(F.silu(self.norm_out(h)))


@dataclass
class LatentDistribution:
    """Diagonal Gaussian posterior (or a point, for a plain autoencoder)."""

    mean: torch.Tensor
    logvar: torch.Tensor | None = None

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.logvar is None:
            return self.mean
        # draw on the generator's device (CPU generators stay usable for CUDA latents), then move
        device = generator.device if generator is not None else self.mean.device
        noise = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype, device=device)
        noise = noise.to(self.mean.device)
        return self.mean + (0.5 * self.logvar).exp() * noise

    def kl(self) -> torch.Tensor:
        """KL to N(0, I), mean over elements."""
        if self.logvar is None:
            return self.mean.new_zeros(())
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1 - self.logvar).mean()


class Autoencoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.to(memory_format=torch.channels_last)

    @property
    def factor(self) -> int:
        return self.cfg.factor

    def encode_distribution(self, x: torch.Tensor) -> LatentDistribution:
        """(B, 3, H, W) in [-1, 1] -> posterior over raw latents (B, latent, H / f, W / f)."""
        if x.shape[-1] % self.factor or x.shape[-2] % self.factor:
            raise ValueError(
                f"image size {tuple(x.shape[-2:])} is not a multiple of the VAE factor {self.factor}"
            )
        h = self.encoder(x)
        if not self.cfg.kl:
            return LatentDistribution(h)
        mean, logvar = h.chunk(2, dim=1)
        return LatentDistribution(mean, logvar.clamp(-30.0, 20.0))

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def encode(
        self, x: torch.Tensor, *, sample: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Pixels -> model latents, scaled and shifted for the diffusion model."""
        dist = self.encode_distribution(x)
        z = dist.sample(generator) if sample else dist.mean
        return (z - self.cfg.shift_factor) * self.cfg.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Model latents -> pixels in [-1, 1] (not clamped)."""
        return self.decoder(latents / self.cfg.scaling_factor + self.cfg.shift_factor)

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, LatentDistribution]:
        """Reconstruction and posterior, for training."""
        dist = self.encode_distribution(x)
        return self.decoder(dist.sample(generator)), dist
