"""The diffusers pipeline classes Seed adapts, and what it must know about each.

A `Family` says which task the pipeline serves, which attention layers are self-attention over the whole
sequence (those are routed to seed-core's dispatch, so `--accel paro|flex|int8-attn` reach them), where the
text tokens sit in that sequence, and how to read the latent grid and the flow time from the transformer's
arguments (for `seed_core.attention.AttentionContext`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Layout:
    """What the transformer's call tells the attention layers: text tokens, latent grid, flow time."""

    text: int  # text tokens in the routed self-attention sequence
    grid: tuple[int, ...]  # (rows, cols) or (frames, rows, cols) of image tokens, row-major
    t: torch.Tensor | None  # (B,) flow time in [0, 1] (1 = noise)


@dataclass(frozen=True)
class Family:
    pipeline: str  # the diffusers pipeline class name (model_index.json's _class_name)
    short: str
    task: str  # "t2i" or "t2v"
    routed: tuple[str, ...]  # fnmatch patterns of the self-attention modules
    text_first: bool  # whether the routed sequence is [text, image] (False: [image, text])
    layout: Callable[[Mapping[str, Any], Any], Layout]  # (transformer call arguments, its config)
    required: tuple[str, ...]  # components that must be present
    default_guidance: float
    default_steps: int = 28


def _sd3(args: Mapping[str, Any], cfg: Any) -> Layout:
    x = args["hidden_states"]  # (B, C, H, W) latents
    p = cfg.patch_size
    t = args.get("timestep")
    return Layout(
        args["encoder_hidden_states"].shape[1],
        (x.shape[-2] // p, x.shape[-1] // p),
        None if t is None else t.float() / 1000.0,
    )


def _flux(args: Mapping[str, Any], cfg: Any) -> Layout:
    ids = args["img_ids"]  # (L, 3) or (B, L, 3): (0, row, col) of each packed latent token
    ids = ids[0] if ids.ndim == 3 else ids
    rows, cols = int(ids[:, 1].max()) + 1, int(ids[:, 2].max()) + 1
    if rows * cols != ids.shape[0]:  # not one row-major grid (reference images, ...): no layout
        rows, cols = 1, ids.shape[0]
    t = args.get("timestep")  # the Flux pipelines pass sigma (timestep / 1000)
    return Layout(args["encoder_hidden_states"].shape[1], (rows, cols), None if t is None else t.float())


def flux_image_ids(rows: int, cols: int, device: torch.device | str) -> torch.Tensor:
    """(rows * cols, 3) position ids of Flux's packed latent tokens: (0, row, col), row-major."""
    ids = torch.zeros(rows, cols, 3, device=device)
    ids[..., 1] += torch.arange(rows, device=device)[:, None]
    ids[..., 2] += torch.arange(cols, device=device)[None, :]
    return ids.reshape(-1, 3)


def _wan(args: Mapping[str, Any], cfg: Any) -> Layout:
    x = args["hidden_states"]  # (B, C, F, H, W)
    pf, ph, pw = cfg.patch_size
    t = args.get("timestep")
    if t is not None and t.ndim > 1:  # Wan 2.2 TI2V: one time per token; the first is the frame's
        t = t[:, 0]
    grid = (x.shape[2] // pf, x.shape[3] // ph, x.shape[4] // pw)
    return Layout(0, grid, None if t is None else t.float() / 1000.0)


_IMAGE_PARTS = (
    "transformer",
    "vae",
    "scheduler",
    "text_encoder",
    "tokenizer",
    "text_encoder_2",
    "tokenizer_2",
)

FAMILIES: dict[str, Family] = {
    f.pipeline: f
    for f in (
        Family(
            pipeline="StableDiffusion3Pipeline",
            short="sd3",
            task="t2i",
            routed=("transformer_blocks.*.attn",),  # SD3.5's image-only `attn2` stays with diffusers
            text_first=False,
            layout=_sd3,
            required=_IMAGE_PARTS,
            default_guidance=7.0,
        ),
        Family(
            pipeline="FluxPipeline",
            short="flux",
            task="t2i",
            routed=("transformer_blocks.*.attn", "single_transformer_blocks.*.attn"),
            text_first=True,
            layout=_flux,
            required=_IMAGE_PARTS,
            default_guidance=3.5,  # embedded guidance (Flux-dev); Flux-schnell has none
        ),
        Family(
            pipeline="WanPipeline",
            short="wan",
            task="t2v",
            routed=("blocks.*.attn1",),  # attn2 is cross-attention to the text: it stays with diffusers
            text_first=True,
            layout=_wan,
            required=("transformer", "vae", "scheduler", "text_encoder", "tokenizer"),
            default_guidance=5.0,
            default_steps=50,
        ),
    )
}


def supported() -> str:
    return ", ".join(FAMILIES)
