"""Multi-axis rotary position embedding, and Seedream's cross-modality position ids.

Every token has a position id per axis: (image index, row, column). Each axis rotates its own slice of the
head dimensions, so attention scores depend only on the per-axis differences of positions.
"""

from __future__ import annotations

import torch


def rope_frequencies(positions: torch.Tensor, axes: tuple[int, ...], theta: float) -> torch.Tensor:
    """positions (B, L, n_axes) -> angles (B, L, sum(axes) / 2), float32."""
    angles = []
    for i, dim in enumerate(axes):
        freqs = theta ** (-torch.arange(0, dim, 2, device=positions.device, dtype=torch.float64) / dim)
        angles.append(positions[..., i : i + 1].double() * freqs)
    return torch.cat(angles, dim=-1).float()


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs of x's last dimension. x (B, H, L, D), angles (B, L, D / 2)."""
    cos, sin = angles.cos()[:, None], angles.sin()[:, None]  # (B, 1, L, D / 2)
    x1, x2 = x.float()[..., 0::2], x.float()[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2).to(x.dtype)


def image_positions(
    height: int, width: int, index: int = 0, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(height * width, 3) ids (index, row, column) of a grid of patches, row-major."""
    rows, cols = torch.meshgrid(
        torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij"
    )
    return torch.stack((torch.full_like(rows, index), rows, cols), dim=-1).view(-1, 3)


def text_positions(length: int, start: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(length, 3) ids for text placed on the image grid *after* the image (Seedream 3.0 cross-modality
    RoPE). The paper gives no formula; like Qwen2-VL's M-RoPE, token i sits at row = column = start + i,
    so text-to-text distances are 1-D and every text token lies beyond the image on both axes."""
    steps = torch.arange(start, start + length, device=device)
    return torch.stack((torch.zeros_like(steps), steps, steps), dim=-1)
