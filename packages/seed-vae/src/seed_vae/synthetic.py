"""Simple synthetic images (coloured discs on a coloured background), rendered in torch.

For smoke-training and testing autoencoders without any dataset; seed-mini's shapes world is the real
training data.
"""

from __future__ import annotations

import torch

from seed_vae.config import AutoencoderConfig
from seed_vae.loss import AutoencoderLoss, psnr
from seed_vae.model import Autoencoder


def random_discs(
    n: int, size: int, *, discs: int = 3, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(n, 3, size, size) images in [-1, 1]: a flat background and `discs` flat discs, random colours."""
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    images = torch.rand(n, 3, 1, 1, generator=generator).expand(n, 3, size, size).clone()
    for _ in range(discs):
        colour = torch.rand(n, 3, 1, 1, generator=generator)
        cx, cy, r = torch.rand(3, n, 1, 1, generator=generator)
        cx, cy, r = cx * size, cy * size, size / 8 + r * size / 4
        inside = ((xx - cx) ** 2 + (yy - cy) ** 2 < r**2).unsqueeze(1)
        images = torch.where(inside, colour, images)
    return images * 2 - 1


def fit_on_discs(
    cfg: AutoencoderConfig, *, steps: int, batch: int, size: int, lr: float, seed: int = 0
) -> Autoencoder:
    """Train an autoencoder from scratch on random disc images (AdamW, the default loss): a smoke run."""
    torch.manual_seed(seed)
    vae, loss = Autoencoder(cfg), AutoencoderLoss()
    opt = torch.optim.AdamW(vae.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = random_discs(batch, size, generator=g)
        recon, dist = vae(x)
        terms = loss(recon, x, dist)
        opt.zero_grad()
        terms.total.backward()
        opt.step()
    return vae


def held_out_psnr(vae: Autoencoder) -> tuple[float, float]:
    """Reconstruction PSNR on 16 held-out 64x64 disc images, and the flat mean-colour floor on them."""
    test = random_discs(16, 64, generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        score = psnr(vae.decode(vae.encode(test)), test)
    return score, psnr(test.mean(dim=(2, 3), keepdim=True).expand_as(test), test)
