"""Autoencoder training loss: L1 + a download-free perceptual term + KL (+ optional adversarial term).

The perceptual term compares multi-scale features of a fixed, randomly initialised conv net (random
features are a known stand-in for LPIPS when no pretrained network can be downloaded) together with image
gradients, which punish blur at edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seed_vae.model import LatentDistribution


class RandomFeatures(nn.Module):
    """Frozen random conv features at 3 scales: (B, 3, H, W) -> list of feature maps."""

    def __init__(self, seed: int = 0, width: int = 32) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.convs = nn.ModuleList()
        c_in = 3
        for c_out in (width, width * 2, width * 4):
            conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2.0 / (9 * c_in)) ** 0.5)
                conv.bias.zero_()
            conv.requires_grad_(False)
            self.convs.append(conv)
            c_in = c_out

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
            feats.append(x)
        return feats


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]


class PatchDiscriminator(nn.Module):
    """Optional PatchGAN critic: (B, 3, H, W) -> (B, 1, H / 8, W / 8) logits."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for c_out in (width, width * 2, width * 4):
            layers += [nn.Conv2d(c, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c = c_out
        layers.append(nn.Conv2d(c, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass
class LossTerms:
    total: torch.Tensor
    l1: torch.Tensor
    perceptual: torch.Tensor
    kl: torch.Tensor
    adversarial: torch.Tensor


class AutoencoderLoss(nn.Module):
    def __init__(
        self,
        l1_weight: float = 1.0,
        perceptual_weight: float = 0.5,
        kl_weight: float = 1e-6,
        adversarial_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.weights = (l1_weight, perceptual_weight, kl_weight, adversarial_weight)
        self.features = RandomFeatures()
        self.discriminator = PatchDiscriminator() if adversarial_weight > 0 else None

    def forward(self, recon: torch.Tensor, target: torch.Tensor, dist: LatentDistribution) -> LossTerms:
        """Generator-side loss for one batch (images in [-1, 1])."""
        w_l1, w_p, w_kl, w_adv = self.weights
        l1 = (recon - target).abs().mean()
        perceptual = sum(
            (F.l1_loss(a, b) for a, b in zip(self.features(recon), self.features(target), strict=True)),
            start=recon.new_zeros(()),
        )
        for ga, gb in zip(_gradients(recon), _gradients(target), strict=True):
            perceptual = perceptual + F.l1_loss(ga, gb)
        kl = dist.kl()
        adversarial = recon.new_zeros(())
        if self.discriminator is not None:
            adversarial = -self.discriminator(recon).mean()
        total = w_l1 * l1 + w_p * perceptual + w_kl * kl + w_adv * adversarial
        return LossTerms(total, l1, perceptual, kl, adversarial)

    def discriminator_loss(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Hinge loss for the critic (call with `recon.detach()`)."""
        if self.discriminator is None:
            raise ValueError("this loss has no discriminator (adversarial_weight is 0)")
        real, fake = self.discriminator(target), self.discriminator(recon)
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB for images in [-1, 1]."""
    mse = ((a.clamp(-1, 1) - b) / 2).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(1.0 / mse)).item()
