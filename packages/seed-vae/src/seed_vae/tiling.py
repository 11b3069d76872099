"""Tiled encode / decode for images too large to process at once.

Each tile is computed with `margin` extra context on every side (cropped away afterwards), and
neighbouring tiles overlap by `overlap` with linear blending ramps. The autoencoder is a local operator
(per-pixel norms, no attention), so with a margin at least its receptive field the tiles are exact and
blending only hides float noise; with less, blending keeps seams from showing.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import torch

from seed_vae.model import Autoencoder


def tile_starts(length: int, tile: int, stride: int, align: int = 1) -> list[int]:
    """Where the tiles of `tiled_apply` start along an axis of `length` input pixels."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append((length - tile) // align * align)
    return sorted(set(starts))


def _ramp(n: int, fade_in: int, fade_out: int, device: torch.device) -> torch.Tensor:
    i = torch.arange(n, device=device, dtype=torch.float32) + 0.5
    w = torch.ones(n, device=device)
    if fade_in:
        w = torch.minimum(w, i / fade_in)
    if fade_out:
        w = torch.minimum(w, (n - i) / fade_out)
    return w


def tiled_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    scale: Fraction,
    tile: int,
    overlap: int,
    margin: int,
    align: int = 1,
) -> torch.Tensor:
    """Apply `fn` (which maps (..., H, W) to (..., H * scale, W * scale), e.g. images (B, C, H, W) or
    videos (B, C, T, H, W)) tile by tile over the last two dimensions.

    `tile`, `overlap`, `margin` are in input pixels and multiples of `align` (the encoder's factor when
    encoding, so tiles land on latent pixels).
    """
    if overlap >= tile:
        raise ValueError(f"overlap ({overlap}) must be smaller than the tile ({tile})")
    for name, value in (("tile", tile), ("overlap", overlap), ("margin", margin)):
        if value % align:
            raise ValueError(f"{name} ({value}) must be a multiple of {align}")
    h, w = x.shape[-2:]
    if h <= tile and w <= tile:
        return fn(x)
    out: torch.Tensor | None = None
    weight: torch.Tensor | None = None
    ys, xs = tile_starts(h, tile, tile - overlap, align), tile_starts(w, tile, tile - overlap, align)
    for iy, y in enumerate(ys):
        for ix, x0 in enumerate(xs):
            th, tw = min(tile, h - y), min(tile, w - x0)
            cy0, cx0 = max(0, y - margin), max(0, x0 - margin)
            cy1, cx1 = min(h, y + th + margin), min(w, x0 + tw + margin)
            piece = fn(x[..., cy0:cy1, cx0:cx1])
            oy, ox = int((y - cy0) * scale), int((x0 - cx0) * scale)
            oh, ow = int(th * scale), int(tw * scale)
            piece = piece[..., oy : oy + oh, ox : ox + ow]
            if out is None:
                out = piece.new_zeros(*piece.shape[:-2], int(h * scale), int(w * scale))
                weight = piece.new_zeros(*[1] * (piece.ndim - 2), int(h * scale), int(w * scale))
            assert weight is not None
            fade = int(overlap * scale)
            wy = _ramp(oh, fade if iy > 0 else 0, fade if iy < len(ys) - 1 else 0, piece.device)
            wx = _ramp(ow, fade if ix > 0 else 0, fade if ix < len(xs) - 1 else 0, piece.device)
            mask = (wy[:, None] * wx[None, :]).to(piece.dtype)
            oy_out, ox_out = int(y * scale), int(x0 * scale)
            out[..., oy_out : oy_out + oh, ox_out : ox_out + ow] += piece * mask
            weight[..., oy_out : oy_out + oh, ox_out : ox_out + ow] += mask
    assert out is not None and weight is not None
    return out / weight


def tiled_decode(
    vae: Autoencoder, latents: torch.Tensor, *, tile: int = 32, overlap: int = 8, margin: int = 8
) -> torch.Tensor:
    """`vae.decode` in latent tiles of `tile` latent pixels (overlap / margin also in latent pixels)."""
    return tiled_apply(
        vae.decode, latents, scale=Fraction(vae.factor), tile=tile, overlap=overlap, margin=margin
    )


def tiled_encode(
    vae: Autoencoder, images: torch.Tensor, *, tile: int = 512, overlap: int = 128, margin: int = 128
) -> torch.Tensor:
    """`vae.encode` (posterior mean) in pixel tiles; sizes are multiples of the VAE factor."""
    return tiled_apply(
        vae.encode,
        images,
        scale=Fraction(1, vae.factor),
        tile=tile,
        overlap=overlap,
        margin=margin,
        align=vae.factor,
    )
