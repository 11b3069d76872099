"""The numbers of each low-bit format: quantize, dequantize, pack (seed-quant's layers and delta weights,
`seed_core.delta`, use them).

- int8: symmetric, one scale per output row (per output channel), values in [-127, 127].
- per-token int8 / fp8: symmetric, one scale per row of the activations, computed on the fly.
- fp8: e4m3 (max 448), one scale per output row.
- int4: asymmetric, groups of `group` consecutive inputs per output row, 4-bit codes in [0, 15], a float16
  scale and a uint8 zero point per group. The range of every group includes 0, so a zero weight stays
  exact and a last, partial group needs no special case. Two codes share a byte: byte j of a row holds
  column j (low nibble) and column j + K/2 (high nibble), so a kernel reads the two halves of K as two
  plain tiles instead of interleaving nibbles.
"""

from __future__ import annotations

import torch

INT8_MAX = 127.0
FP8 = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8).max)  # 448
INT4_MAX = 15
EPS = 1e-12


def quantize_rows_int8(
    w: torch.Tensor, scale_dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) -> int8 codes (N, K) and scales (N,) in `scale_dtype`: w ≈ codes * scale. The codes are made
    with the scales as stored (a float16 scale of a tiny row is near the subnormals; one that underflows
    becomes float16's smallest normal, and the row's codes 0)."""
    w = w.detach().float()
    scale = (w.abs().amax(dim=1).clamp_min(EPS) / INT8_MAX).to(scale_dtype)
    scale = torch.where(scale > 0, scale, torch.finfo(scale_dtype).tiny)
    codes = torch.round(w / scale.float()[:, None]).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return codes, scale


def quantize_tokens_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic per-token quantization: (M, K) -> int8 (M, K) and float32 scales (M, 1)."""
    x = x.float()
    scale = x.abs().amax(dim=1, keepdim=True).clamp_min(EPS) / INT8_MAX
    return torch.round(x / scale).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8), scale


def quantize_rows_fp8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) -> e4m3 (N, K) and float32 scales (N,): w ≈ codes * scale."""
    w = w.detach().float()
    scale = w.abs().amax(dim=1).clamp_min(EPS) / FP8_MAX
    return (w / scale[:, None]).clamp_(-FP8_MAX, FP8_MAX).to(FP8), scale


def quantize_tokens_fp8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic per-token e4m3: (M, K) -> e4m3 (M, K) and float32 scales (M, 1)."""
    x = x.float()
    scale = x.abs().amax(dim=1, keepdim=True).clamp_min(EPS) / FP8_MAX
    return (x / scale).clamp_(-FP8_MAX, FP8_MAX).to(FP8), scale


def groups_of(k: int, group: int) -> int:
    return -(-k // group)


#: shrink factors of a group's [min, max] range that `quantize_int4(..., search=True)` tries
CLIP_GRID = tuple(1.0 - 0.025 * i for i in range(17))  # 1.0 down to 0.6


def _int4_codes(
    blocks: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scales, zeros and codes of groups (N, G, group) for the ranges [lo, hi] (N, G), 0 inside them."""
    scale = ((hi - lo) / INT4_MAX).clamp_min(EPS).to(torch.float16)
    s = scale.float()
    zero = torch.round(-lo / s).clamp_(0, INT4_MAX)
    codes = torch.round(blocks / s[..., None] + zero[..., None]).clamp_(0, INT4_MAX)
    return scale, zero, codes


def quantize_int4(
    w: torch.Tensor, group: int, *, search: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, K), K even -> packed uint8 (N, K/2), float16 scales and uint8 zeros (N, ⌈K/group⌉).

    Each group's range is its [min, max]; with `search` it is the shrink of that range (`CLIP_GRID`) whose
    codes reconstruct the group with the least squared error: clipping a few outliers buys a finer step
    for the rest (as AWQ's and llama.cpp's quantizers search it; data-free, the same format)."""
    n, k = w.shape
    if k % 2:
        raise ValueError(f"int4 packing needs an even number of inputs, got {k}")
    g = groups_of(k, group)
    padded = torch.zeros(n, g * group, dtype=torch.float32, device=w.device)
    padded[:, :k] = w.detach().float()
    blocks = padded.view(n, g, group)
    lo = blocks.amin(dim=2).clamp(max=0.0)  # the range includes 0 (and the zero padding)
    hi = blocks.amax(dim=2).clamp(min=0.0)
    scale, zero, codes = _int4_codes(blocks, lo, hi)
    if search:

        def error(scale: torch.Tensor, zero: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
            return ((codes - zero[..., None]) * scale.float()[..., None] - blocks).pow(2).sum(2)

        best = error(scale, zero, codes)
        for shrink in CLIP_GRID[1:]:
            s2, z2, c2 = _int4_codes(blocks, lo * shrink, hi * shrink)
            e2 = error(s2, z2, c2)
            better = e2 < best
            scale, zero = torch.where(better, s2, scale), torch.where(better, z2, zero)
            codes = torch.where(better[..., None], c2, codes)
            best = torch.minimum(best, e2)
    codes = codes.view(n, g * group)[:, :k].to(torch.uint8)
    return pack_int4(codes), scale, zero.to(torch.uint8)


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes (N, K) in [0, 15] -> (N, K/2): column j low, column j + K/2 high."""
    half = codes.shape[1] // 2
    return codes[:, :half] | (codes[:, half:] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """(N, K/2) -> uint8 codes (N, K)."""
    return torch.cat([packed & 0xF, packed >> 4], dim=1)


def dequantize_int4(
    packed: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group: int, dtype: torch.dtype
) -> torch.Tensor:
    """The (N, K) weights that packed codes stand for, in `dtype`."""
    codes = unpack_int4(packed)
    k = codes.shape[1]
    s = scale.to(dtype).repeat_interleave(group, dim=1)[:, :k]
    z = zero.to(dtype).repeat_interleave(group, dim=1)[:, :k]
    return (codes.to(dtype) - z) * s
