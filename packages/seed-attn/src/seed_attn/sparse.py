"""Block-sparse, low-bit attention in torch: the reference path that runs anywhere, and the exact
specification that the Triton kernel follows.

A block mask (..., nQb, nKb) says which key blocks each query block attends to; it is stored compacted as
`BlockLists`: for each query block, the ids of its key blocks (kept ones first) and how many there are, so
the work is proportional to the kept blocks. Quantization, as SageAttention / PARO do it:

- Q·Kᵀ in 8 or 4 bits: K is smoothed first (its mean over tokens subtracted, which shifts each score row by
  a constant and leaves the softmax unchanged), then Q (times the softmax scale) and K are quantized
  symmetrically with one scale per (head, block of tokens). Integer products are exact in float32.
- P·V in 8 or 4 bits: V is smoothed (mean added back after normalisation, since P's rows sum to 1) and
  quantized per (head, key block); P = exp(s - running max) lies in [0, 1] and takes the static scale
  1 / 127 (or 1 / 15), as in PARO's INT8-PV kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from seed_core.attention import causal_mask

QMAX = {8: 127, 4: 7}
PMAX = {8: 127, 4: 15}  # P in [0, 1] is unsigned
BITS = (16, 8, 4)  # 16 = no quantization (the input dtype)


@dataclass(frozen=True)
class BlockLists:
    """A compacted block mask: `index` (Bm, Hm, nQb, K) int32 key-block ids, kept ones first; `count`
    (Bm, Hm, nQb) int32 how many are kept. Bm / Hm are 1 or the batch / head count (broadcast)."""

    index: torch.Tensor
    count: torch.Tensor
    block: int

    @classmethod
    def from_mask(cls, block_mask: torch.Tensor, block: int) -> BlockLists:
        """From a bool (…, nQb, nKb) block mask with 2 to 4 dims."""
        while block_mask.ndim < 4:
            block_mask = block_mask[None]
        if not bool(block_mask.any(-1).all()):
            raise ValueError("every query block must keep at least one key block")
        order = torch.argsort((~block_mask).to(torch.int8), dim=-1, stable=True)
        count = block_mask.sum(-1)
        width = int(count.max())
        return cls(order[..., :width].to(torch.int32).contiguous(), count.to(torch.int32).contiguous(), block)

    @classmethod
    def dense(cls, lq: int, lk: int, block: int, device: torch.device | str = "cpu") -> BlockLists:
        n_q, n_k = math.ceil(lq / block), math.ceil(lk / block)
        return cls.from_mask(torch.ones(n_q, n_k, dtype=torch.bool, device=device), block)

    def to_mask(self, n_k: int) -> torch.Tensor:
        """Back to a bool (Bm, Hm, nQb, n_k) block mask."""
        slots = torch.arange(self.index.shape[-1], device=self.index.device)
        valid = slots < self.count[..., None].long()
        # unused slots write to a spare last column, dropped after
        mask = torch.zeros(*self.index.shape[:-1], n_k + 1, dtype=torch.bool, device=self.index.device)
        return mask.scatter(-1, torch.where(valid, self.index.long(), n_k), True)[..., :n_k]

    def density(self, n_k: int) -> float:
        return float(self.count.float().mean()) / n_k


def quantize_blocks(x: torch.Tensor, block: int, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-(B, H, block of tokens) quantization of (B, H, L, D): integer values (as int8, L
    padded to a multiple of `block` with zeros) and float32 scales (B, H, nb)."""
    b, h, length, d = x.shape
    n = math.ceil(length / block)
    x = F.pad(x.float(), (0, 0, 0, n * block - length)).view(b, h, n, block, d)
    scale = x.abs().amax(dim=(-1, -2)).clamp(min=1e-12) / QMAX[bits]  # (B, H, nb)
    q = torch.round(x / scale[..., None, None]).clamp(-QMAX[bits], QMAX[bits])
    return q.to(torch.int8).view(b, h, n * block, d), scale


def _additive_mask(
    mask: torch.Tensor | None, is_causal: bool, shape: tuple[int, int, int, int], device: torch.device
) -> torch.Tensor | None:
    """The caller's mask and causality as one float32 (B|1, H|1, Lq, Lk) tensor of 0 / -inf (or added
    values), or None."""
    _, _, lq, lk = shape
    out = None
    if mask is not None:
        while mask.ndim < 4:
            mask = mask[None]
        out = (
            torch.zeros(mask.shape, device=device).masked_fill(~mask, float("-inf"))
            if mask.dtype == torch.bool
            else mask.float()
        )
    if is_causal:
        causal = torch.zeros(lq, lk, device=device).masked_fill(~causal_mask(lq, lk, device), float("-inf"))
        out = causal[None, None] if out is None else out + causal
    return out


def block_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lists: BlockLists | None = None,
    *,
    block: int = 64,
    qk_bits: int = 16,
    pv_bits: int = 16,
    scale: float | None = None,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    chunk_bytes: int = 64 * 2**20,
    key_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(q kᵀ · scale + mask) v over the kept blocks only, optionally quantized (see the module doc).

    q (B, H, Lq, D), k (B, Hk, Lk, D), v (B, Hk, Lk, Dv) -> (B, H, Lq, Dv) in q's dtype. Query blocks are
    processed in chunks of about `chunk_bytes` of gathered keys, so memory follows the kept blocks. Per-key
    masks (and `key_bias`, (B|1, H|1, Lk) added to every row) are gathered with the keys; only a mask that
    varies by query is expanded to the whole (Lq, Lk)."""
    if qk_bits not in BITS or pv_bits not in BITS:
        raise ValueError(f"qk_bits and pv_bits must be one of {BITS}, got {qk_bits} and {pv_bits}")
    b, h, lq, d = q.shape
    lk, dv = k.shape[2], v.shape[-1]
    if k.shape[1] != h:  # grouped-query attention
        k, v = k.repeat_interleave(h // k.shape[1], dim=1), v.repeat_interleave(h // k.shape[1], dim=1)
    lists = lists or BlockLists.dense(lq, lk, block, q.device)
    bs = lists.block
    n_q, n_k = math.ceil(lq / bs), math.ceil(lk / bs)
    if lists.index.shape[-2] != n_q:
        raise ValueError(f"block lists have {lists.index.shape[-2]} query blocks; {lq} queries need {n_q}")
    scale = 1.0 / math.sqrt(d) if scale is None else scale

    # Q·Kᵀ operands: float32, or integer-valued float32 with per-block scales
    if qk_bits == 16:
        qf = F.pad(q.float() * scale, (0, 0, 0, n_q * bs - lq))
        kf = F.pad(k.float(), (0, 0, 0, n_k * bs - lk))
        q_scale = torch.ones(b, h, n_q, device=q.device)
        k_scale = torch.ones(b, h, n_k, device=q.device)
    else:
        k_smooth = k.float() - k.float().mean(dim=2, keepdim=True)
        qi, q_scale = quantize_blocks(q.float() * scale, bs, qk_bits)
        ki, k_scale = quantize_blocks(k_smooth, bs, qk_bits)
        qf, kf = qi.float(), ki.float()
    # P·V operand: V itself, or smoothed and quantized V (its mean is added back at the end)
    v_mean = torch.zeros(b, h, 1, dv, device=q.device)
    if pv_bits == 16:
        vf = F.pad(v.float(), (0, 0, 0, n_k * bs - lk))
        v_scale = torch.ones(b, h, n_k, device=q.device)
    else:
        v_mean = v.float().mean(dim=2, keepdim=True)
        vi, v_scale = quantize_blocks(v.float() - v_mean, bs, pv_bits)
        vf = vi.float()

    if mask is not None:
        m4 = mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape))
        if m4.shape[2] == 1:  # per key: gathered with the keys, never expanded to (Lq, Lk)
            per_key = _additive_mask(m4, False, (b, h, lq, lk), q.device)[:, :, 0, :]  # type: ignore[index]
            key_bias = per_key if key_bias is None else key_bias + per_key
            mask = None
    bias_blocks = None
    if key_bias is not None:
        bias_blocks = F.pad(key_bias.float().expand(b, h, lk), (0, n_k * bs - lk)).view(b, h, n_k, bs)
    extra = _additive_mask(mask, is_causal, (b, h, lq, lk), q.device)
    if extra is not None:
        extra = F.pad(extra.expand(*extra.shape[:2], lq, lk), (0, n_k * bs - lk, 0, n_q * bs - lq))
    key_ok = torch.arange(n_k * bs, device=q.device) < lk  # padded keys never count

    qb = qf.view(b, h, n_q, bs, d)
    kb, vb = kf.view(b, h, n_k, bs, d), vf.view(b, h, n_k, bs, dv)
    index = lists.index.long().expand(b, h, -1, -1)
    count = lists.count.long().expand(b, h, -1)
    out = torch.empty(b, h, n_q, bs, dv, device=q.device)
    batch_ids = torch.arange(b, device=q.device).view(b, 1, 1, 1)
    head_ids = torch.arange(h, device=q.device).view(1, h, 1, 1)
    qd = qb * q_scale[..., None, None]  # integer-valued Q / K times their block scales: exact products
    kd = kb * k_scale[..., None, None]
    extra_rows = None if extra is None else extra.view(*extra.shape[:2], n_q, bs, n_k * bs)
    for sel_list, width in _chunks(lists, b * h * bs * (d + dv + 2 * bs) * 4, chunk_bytes):
        sel = torch.tensor(sel_list, device=q.device)
        idx = index[:, :, sel, :width]  # (B, H, c, W)
        cnt = count[:, :, sel]
        c = len(sel_list)
        rows = None if extra_rows is None else extra_rows[:, :, sel].expand(b, h, -1, -1, -1)

        def gather(x: torch.Tensor, idx: torch.Tensor = idx) -> torch.Tensor:
            # (B, H, nK, ...) -> (B, H, c, W, ...) key blocks listed for each query block of the chunk
            return x[batch_ids, head_ids, idx]

        bias = None if bias_blocks is None else gather(bias_blocks)
        if pv_bits == 16:  # dequantized operands through torch's fused SDPA: the fast CPU path
            out[:, :, sel] = _chunk_sdpa(
                qd[:, :, sel], gather(kd), gather(vb), idx, cnt, key_ok, rows, bs, bias
            )
            continue
        kc = gather(kb).reshape(b, h, c, width * bs, d)
        s = qb[:, :, sel] @ kc.transpose(-1, -2)  # (B, H, c, bs, W * bs)
        s = s * (q_scale[:, :, sel, None, None] * gather(k_scale).repeat_interleave(bs, -1)[:, :, :, None])
        s = s + _score_mask(idx, cnt, key_ok, rows, bias, bs).view(b, h, c, -1, width * bs)
        row_max = s.amax(-1, keepdim=True).clamp(min=-1e30)  # a fully masked (padded) row stays finite
        p = torch.exp(s - row_max)
        denom = p.sum(-1, keepdim=True)
        p = torch.round(p * PMAX[pv_bits]) / PMAX[pv_bits]
        vc = gather(vb) * gather(v_scale)[..., None, None]  # (B, H, c, W, bs, Dv)
        out[:, :, sel] = p @ vc.reshape(b, h, c, width * bs, dv) / denom.clamp(min=1e-30)
    out = out.view(b, h, n_q * bs, dv)
    return (out[:, :, :lq] + v_mean).to(q.dtype)


def _chunks(lists: BlockLists, bytes_per_key_block: int, chunk_bytes: int) -> list[tuple[list[int], int]]:
    """Query blocks grouped by how many key blocks they keep (sorted), each group with its widest row:
    a dense text row then does not widen every other row. Groups hold about `chunk_bytes` of work."""
    widths = lists.count.amax(dim=tuple(range(lists.count.ndim - 1))).tolist()  # (nQ,)
    chunks: list[tuple[list[int], int]] = []
    current: list[int] = []
    for qi in sorted(range(len(widths)), key=lambda i: widths[i]):
        if current and (len(current) + 1) * widths[qi] * bytes_per_key_block > chunk_bytes:
            chunks.append((current, widths[current[-1]]))
            current = []
        current.append(qi)
    if current:
        chunks.append((current, widths[current[-1]]))
    return chunks


def _score_mask(
    idx: torch.Tensor,  # (B, H, c, W) key blocks of each query block
    count: torch.Tensor,  # (B, H, c) how many of them are real
    key_ok: torch.Tensor,  # (nK * bs,) keys that exist (not padding)
    rows: torch.Tensor | None,  # (B, H, c, bs, nK * bs) additive mask rows of these query blocks
    bias: torch.Tensor | None,  # (B, H, c, W, bs) per-key bias of the gathered keys
    bs: int,
) -> torch.Tensor:
    """Additive (B, H, c, bs or 1, W * bs) mask over the gathered keys: -inf for unused slots and padded
    keys, plus the caller's mask and per-key bias."""
    b, h, c, width = idx.shape
    n_k = key_ok.numel() // bs
    slot_ok = torch.arange(width, device=idx.device) < count[..., None]  # (B, H, c, W)
    ok = (slot_ok[..., None] & key_ok.view(n_k, bs)[idx]).view(b, h, c, 1, width * bs)
    mask = torch.zeros(ok.shape, device=idx.device).masked_fill(~ok, float("-inf"))
    if bias is not None:
        mask = mask + bias.reshape(b, h, c, 1, width * bs)
    if rows is not None:
        cols = torch.gather(
            rows.reshape(b, h, c, bs, n_k, bs), 4, idx[:, :, :, None, :, None].expand(b, h, c, bs, width, bs)
        )
        mask = mask + cols.reshape(b, h, c, bs, width * bs)
    return mask


def _chunk_sdpa(
    q: torch.Tensor,  # (B, H, c, bs, D), softmax scale folded in
    k: torch.Tensor,  # (B, H, c, W, bs, D) gathered key blocks
    v: torch.Tensor,  # (B, H, c, W, bs, Dv)
    idx: torch.Tensor,  # (B, H, c, W)
    count: torch.Tensor,  # (B, H, c)
    key_ok: torch.Tensor,  # (nK * bs,)
    rows: torch.Tensor | None,  # (B, H, c, bs, nK * bs) additive
    bs: int,
    bias: torch.Tensor | None = None,  # (B, H, c, W, bs)
) -> torch.Tensor:
    b, h, c, width = idx.shape
    mask: torch.Tensor | None = None
    n_k = key_ok.numel() // bs
    full = (
        rows is None
        and bias is None
        and bool((count == width).all())
        and bool(key_ok.view(n_k, bs)[idx].all())
    )
    if not full:
        mask = _score_mask(idx, count, key_ok, rows, bias, bs).view(b * h, c, -1, width * bs)
    # 4-D (the query blocks as the "heads" axis), so torch picks its fused kernel
    out = F.scaled_dot_product_attention(
        q.reshape(b * h, c, bs, -1),
        k.reshape(b * h, c, width * bs, -1),
        v.reshape(b * h, c, width * bs, -1),
        attn_mask=mask,
        scale=1.0,
    )
    return out.view(b, h, c, bs, -1)


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    block_mask: torch.Tensor | None = None,
    *,
    block: int = 64,
    scale: float | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The float64 masked reference the tests measure against: the whole score matrix, block mask
    expanded to elements. Only for small shapes."""
    b, h, lq, d = q.shape
    lk = k.shape[2]
    if k.shape[1] != h:
        k, v = k.repeat_interleave(h // k.shape[1], dim=1), v.repeat_interleave(h // k.shape[1], dim=1)
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    s = (q.double() @ k.double().transpose(-1, -2)) * scale
    if block_mask is not None:
        while block_mask.ndim < 4:
            block_mask = block_mask[None]
        full = block_mask.repeat_interleave(block, -2).repeat_interleave(block, -1)[..., :lq, :lk]
        s = s.masked_fill(~full, float("-inf"))
    extra = _additive_mask(mask, False, (b, h, lq, lk), q.device)
    if extra is not None:
        s = s + extra.double()
    return (s.softmax(-1) @ v.double()).to(q.dtype)
