"""Helpers of the tests and benchmarks that compare Seed's diffusers backbones with diffusers itself."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

SIZE = 32
FRAMES = 5
PROMPT = "a red circle left of a blue square"


def diffusers_output(
    pipe: Any, family: str, seed: int = 3, steps: int = 2, guidance: float = 5.0, size: int = SIZE
) -> np.ndarray:
    """What diffusers' own call returns for the fixed test request: (H, W, 3) or (F, H, W, 3) in [0, 1]."""
    kwargs = dict(
        height=size, width=size, num_inference_steps=steps, guidance_scale=guidance, output_type="np"
    )
    if family == "wan":
        kwargs["num_frames"] = FRAMES
    out = pipe(
        "a red circle left of a blue square", generator=[torch.Generator().manual_seed(seed)], **kwargs
    )
    return np.asarray(out.frames[0] if family == "wan" else out.images[0], dtype=np.float64)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)
