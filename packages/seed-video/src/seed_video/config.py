"""NaDiT configs (SeedVR2's DiT) with named presets: the official `3b` and `7b`, and a `tiny` one for tests.

The two official models differ in more than size (notes-seedvr2 §1): the 3B shares its weights between the
video and text streams after the first `mm_layers` blocks, uses a SwiGLU MLP without bias, integer 3D RoPE
that also rotates text ("mmrope3d"), a final RMSNorm + shift/scale, and a last block that leaves the text
stream alone; the 7B keeps separate weights everywhere, a GELU(tanh) MLP with bias, "pixel" RoPE on
window-local coordinates in [-1, 1] with text unrotated, and no final norm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from seed_core.config import Config


@dataclass(frozen=True)
class NaDiTConfig(Config):
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {
            "dim": 64,
            "heads": 2,
            "head_dim": 32,
            "layers": 3,
            "mm_layers": 1,
            "txt_in_dim": 48,
        },
        # seedvr2-mini: the 3B's design at 3.9M parameters, trained on the shapes world (width 192: the
        # residual stream carries the noise and the low-quality latent, 64 values each per token)
        "mini": {
            "dim": 192,
            "heads": 6,
            "head_dim": 32,
            "layers": 6,
            "mm_layers": 2,
            "txt_in_dim": 64,
        },
        "3b": {"dim": 2560, "heads": 20, "layers": 32, "mm_layers": 10},
        "7b": {
            "dim": 3072,
            "heads": 24,
            "layers": 36,
            "mm_layers": 36,
            "mlp": "gelu",
            "rope": "pixel",
            "out_norm": False,
            "vid_only_last": False,
        },
    }

    in_channels: int = 33  # noise (16) + low-quality latent (16) + mask (1)
    out_channels: int = 16
    dim: int = 2560
    txt_in_dim: int = 5120
    heads: int = 20
    head_dim: int = 128
    layers: int = 32
    mm_layers: int = 10  # blocks [0, mm_layers) keep separate video / text weights; the rest share them
    mlp: str = "swiglu"  # swiglu (no bias) | gelu (tanh, with bias)
    rope: str = "mmrope3d"  # mmrope3d (3B) | pixel (7B)
    out_norm: bool = True  # 3B: RMSNorm + shift / scale before the output projection
    vid_only_last: bool = True  # 3B: the last block leaves the text stream unmodulated
    windows: tuple[int, int, int] = (4, 3, 3)  # numbers of windows (t, h, w) at 720p
    patch: tuple[int, int, int] = (1, 2, 2)
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.mlp not in ("swiglu", "gelu") or self.rope not in ("mmrope3d", "pixel"):
            raise ValueError(
                f"mlp must be swiglu or gelu and rope mmrope3d or pixel, got {self.mlp}, {self.rope}"
            )

    @property
    def mlp_hidden(self) -> int:
        if self.mlp == "swiglu":  # the official rounding: 2/3 of 4x, up to a multiple of 256
            return 256 * math.ceil(int(2 * self.dim * 4 / 3) / 256)
        return 4 * self.dim

    @property
    def patch_features(self) -> int:
        t, h, w = self.patch
        return t * h * w * self.in_channels
