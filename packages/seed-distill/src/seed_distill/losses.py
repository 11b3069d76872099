"""Distillation losses as pure functions, and the timestep schedules they sample from.

Convention: ``x_t = (1 - t) x0 + t noise``, velocity ``v = noise - x0``, ``x0 = x_t - t v``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seed_core.samplers import shift_timesteps


def _col(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.view(-1, *[1] * (like.ndim - 1)).to(like.dtype)


def noised(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The interpolant x_t = (1 - t) x0 + t noise, t (B,)."""
    return (1 - _col(t, x0)) * x0 + _col(t, x0) * noise


def to_x0(x: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return x - _col(t, x) * v


def euler_jump(x: torch.Tensor, t: torch.Tensor, v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """One Euler step of the ODE from t to s (s < t): x_s = x_t + (s - t) v."""
    return x + _col(s - t, x) * v


# --- timestep schedules -----------------------------------------------------------------------------


def uniform_t(
    n: int, generator: torch.Generator, lo: float = 0.02, hi: float = 0.98, shift: float = 1.0
) -> torch.Tensor:
    """U[lo, hi] (DMD2's 2%-98% range), then the teacher's timestep shift."""
    return shift_timesteps(lo + (hi - lo) * torch.rand(n, generator=generator), shift)


def cubic_t(n: int, generator: torch.Generator, shift: float = 1.0) -> torch.Tensor:
    """ADP's generator schedule biased to high noise. The paper gives no formula; we use
    t = 1 - (1 - u)^3, u ~ U(0, 1), which puts 79% of the mass above t = 0.5."""
    u = torch.rand(n, generator=generator)
    return shift_timesteps((1 - (1 - u) ** 3).clamp(0.02, 1.0), shift)


# --- distribution matching --------------------------------------------------------------------------


def dmd_loss(x: torch.Tensor, x0_real: torch.Tensor, x0_fake: torch.Tensor) -> torch.Tensor:
    """DMD's reverse-KL gradient as a loss on the generator output `x` (B, ...).

    grad = (x0_fake - x0_real) / mean|x - x0_real| per sample (DMD2's normalisation), and the loss
    0.5 ||x - sg(x - grad)||^2 has exactly that gradient with respect to x (mean over elements)."""
    dims = tuple(range(1, x.ndim))
    with torch.no_grad():
        scale = (x - x0_real).abs().mean(dim=dims, keepdim=True).clamp_min(1e-6)
        grad = torch.nan_to_num((x0_fake - x0_real) / scale)
        target = (x - grad).detach()
    return 0.5 * F.mse_loss(x.float(), target.float())


def flow_loss(v: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Flow-matching loss of a predicted velocity (the fake score's denoising loss)."""
    return F.mse_loss(v.float(), (noise - x0).float())


# --- adversarial ------------------------------------------------------------------------------------


def hinge_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def hinge_g(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


def ns_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN loss of the discriminator (DMD2)."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def ns_g(fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake).mean()


def rpgan_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Relativistic pairing GAN (R3GAN / SeedVR2 / AAPT): softplus(D(fake) - D(real))."""
    return F.softplus(fake - real).mean()


def rpgan_g(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(real - fake).mean()


def approx_r(logits: torch.Tensor, logits_perturbed: torch.Tensor) -> torch.Tensor:
    """Approximate R1 / R2 (APT): ||D(x) - D(x + sigma n)||^2, with no second-order gradients."""
    return (logits - logits_perturbed).pow(2).mean()


class Discriminator(nn.Module):
    """Trainable heads on a frozen backbone's features (DMDX / FastGen style): one head per depth, each
    LayerNorm -> Linear -> SiLU -> Linear to one logit per token, averaged over tokens; heads are summed.
    Input: a list of (B, N, D_i); output (B,) logits."""

    def __init__(self, dims: list[int], width: int = 256) -> None:
        super().__init__()
        self.heads = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(d), nn.Linear(d, width), nn.SiLU(), nn.Linear(width, 1)) for d in dims
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.heads):
            raise ValueError(f"{len(features)} feature maps for {len(self.heads)} heads")
        out = [head(f.float()).squeeze(-1) for head, f in zip(self.heads, features, strict=True)]
        return torch.stack([o.mean(dim=tuple(range(1, o.ndim))) if o.ndim > 1 else o for o in out]).sum(0)


def refl_hinge(reward: torch.Tensor, margin: float) -> torch.Tensor:
    """ReFL (Hyper-SD / Hyper-Bagel): relu(margin - r); samples already rewarded above the margin stop
    pushing, so the reward cannot be over-optimised without bound."""
    return F.relu(margin - reward).mean()


class PixelDiscriminator(nn.Module):
    """A small patch discriminator on decoded images (B, 3, H, W) in [-1, 1] -> (B,) logits: the pixel half
    of ADP's hybrid discriminator. DMDX initialises it from SAM's encoder; we have no SAM, so it starts
    from scratch (strided convs, GroupNorm, one logit per patch, averaged)."""

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.GroupNorm(8, c), nn.SiLU()]
            c_in = c
        layers.append(nn.Conv2d(c_in, 1, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.body(pixels.float()).mean(dim=(1, 2, 3))
