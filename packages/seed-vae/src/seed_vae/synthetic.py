"""Simple synthetic images (coloured discs on a coloured background), rendered in torch.

For smoke-training and testing autoencoders without any dataset; seed-mini's shapes world is the real
training data.
"""

from __future__ import annotations

import torch


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
