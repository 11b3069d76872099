"""MMDiT configs with named presets, from the test-sized `tiny` to the Seedream-scale `8b`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from seed_core.config import Config


@dataclass(frozen=True)
class MMDiTConfig(Config):
    """A Seedream-style MMDiT: `double_blocks` dual-stream blocks (separate text / image weights, joint
    attention), then `single_blocks` single-stream blocks over the joined sequence.

    `rope_axes` splits each head's dimensions between the three RoPE axes (image index, row, column); they
    must sum to `hidden / heads` and be even.
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {
            "hidden": 64,
            "heads": 4,
            "double_blocks": 1,
            "single_blocks": 1,
            "text_dim": 32,
            "pooled_dim": 32,
            "rope_axes": (4, 6, 6),
        },
        # seed-mini: 8-channel 16x16 latents at 64 px (64 tokens), 64x64 at 256 px (1024 tokens)
        "mini": {
            "in_channels": 8,
            "patch_size": 2,
            "hidden": 192,
            "heads": 3,
            "double_blocks": 2,
            "single_blocks": 3,
            "text_dim": 192,
            "pooled_dim": 192,
            "rope_axes": (16, 24, 24),
        },
        # Seedream-scale sizes (no public weights): for meta-device builds, planning and accelerators
        "1b": {
            "in_channels": 32,
            "patch_size": 2,
            "hidden": 1536,
            "heads": 24,
            "double_blocks": 8,
            "single_blocks": 16,
            "text_dim": 4096,
            "pooled_dim": 768,
            "rope_axes": (16, 24, 24),
        },
        "8b": {
            "in_channels": 32,
            "patch_size": 2,
            "hidden": 3072,
            "heads": 24,
            "double_blocks": 12,
            "single_blocks": 28,
            "text_dim": 4096,
            "pooled_dim": 768,
            "rope_axes": (32, 48, 48),
        },
    }

    in_channels: int = 4
    patch_size: int = 2
    hidden: int = 512
    heads: int = 8
    double_blocks: int = 2
    single_blocks: int = 4
    mlp_ratio: float = 4.0
    text_dim: int = 512
    pooled_dim: int = 512
    qk_norm: bool = True
    rope_axes: tuple[int, int, int] = (16, 24, 24)
    rope_theta: float = 10000.0
    max_references: int = 4
    num_tasks: int = 3  # generate, edit, compose
    num_sources: int = 8  # SeedEdit meta-info: data-source labels (0 = default)
    guidance_embed: bool = False  # a guidance-scale input, for CFG-distilled students

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        head_dim = self.hidden // self.heads
        if sum(self.rope_axes) != head_dim or any(a % 2 for a in self.rope_axes):
            raise ValueError(f"rope_axes {self.rope_axes} must be even and sum to the head size {head_dim}")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


TASKS = {"generate": 0, "edit": 1, "compose": 2}
