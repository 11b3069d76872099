"""The block-sparse / low-bit attention as a torch custom op (`seed_attn::block_sparse_attention`) with a
fake implementation, so `torch.compile` traces through it and CUDA graphs capture it; and FlexAttention on
the same block mask.

Dispatch inside the op: the Triton kernel on CUDA when it takes the inputs, else the torch path, with one
warning naming the reason (never a silent wrong result).
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import torch

from seed_attn.sparse import BlockLists, _additive_mask, block_sparse_attention
from seed_core.errors import AttentionInputError

_warned: set[str] = set()


def warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _triton_reason(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int, qk_bits: int, pv_bits: int
) -> str | None:
    try:
        from seed_attn import kernels
    except ImportError:
        return "triton is not installed"
    return kernels.supported(q, k, v, block, qk_bits, pv_bits)


@torch.library.custom_op("seed_attn::block_sparse_attention", mutates_args=())
def _block_sparse_op(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    index: torch.Tensor,
    count: torch.Tensor,
    block: int,
    qk_bits: int,
    pv_bits: int,
    scale: float,
    key_bias: torch.Tensor | None,
    mask: torch.Tensor | None,
    allow_triton: bool,
    perm: torch.Tensor | None,
) -> torch.Tensor:
    lists = BlockLists(index, count, block)
    reason = "cpu"
    if q.device.type == "cuda":
        reason = _triton_reason(q, k, v, block, qk_bits, pv_bits) if allow_triton else "kernel=torch"
    if reason is None and mask is None:
        from seed_attn.kernels import triton_block_sparse_attention

        return triton_block_sparse_attention(
            q, k, v, lists, qk_bits=qk_bits, pv_bits=pv_bits, scale=scale, key_bias=key_bias, perm=perm
        )
    if q.device.type == "cuda":
        warn_once(
            f"seed-attn: torch reference path instead of the Triton kernel ({reason or 'a full mask'}); "
            "slower, same numerics"
        )
    if key_bias is not None:
        extra = key_bias[:, :, None, :]
        mask = extra if mask is None else mask + extra
    if perm is None:
        return block_sparse_attention(
            q, k, v, lists, qk_bits=qk_bits, pv_bits=pv_bits, scale=scale, mask=mask
        )
    # the kernel reads through the order; here the inputs are gathered into it and the output back
    q, k, v = (reorder(x, perm) for x in (q, k, v))
    if mask is not None:  # (B', H', Lq', Lk) with Lq' = 1 for per-key masks: reorder the keys, then queries
        mask = reorder(mask.expand(-1, q.shape[1], -1, -1).transpose(2, 3), perm).transpose(2, 3)
        mask = mask if mask.shape[2] == 1 else reorder(mask, perm)
    out = block_sparse_attention(q, k, v, lists, qk_bits=qk_bits, pv_bits=pv_bits, scale=scale, mask=mask)
    return reorder(out, torch.argsort(perm))


@_block_sparse_op.register_fake
def _(q, k, v, index, count, block, qk_bits, pv_bits, scale, key_bias, mask, allow_triton, perm):  # type: ignore[no-untyped-def]
    return q.new_empty((*q.shape[:-1], v.shape[-1]))


def reorder(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """x (B, H, L, D) with row i of head h taken from row perm[h, i] (perm: (H, L))."""
    return x.gather(2, perm[None, :, :, None].expand(x.shape[0], -1, -1, x.shape[-1]))


def split_mask(mask: torch.Tensor | None, b: int, lk: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A per-key mask (B|1, H|1, 1, Lk) becomes a (B, H|1, Lk) additive bias (what the kernel takes); any
    other mask stays a full additive mask."""
    additive = _additive_mask(
        mask, False, (b, 1, 1, lk), torch.device("cpu") if mask is None else mask.device
    )
    if additive is None:
        return None, None
    if additive.shape[2] == 1:
        return additive[:, :, 0].expand(b, -1, lk).contiguous(), None
    return None, additive


def sparse_attention(
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
    allow_triton: bool = True,
    perm: torch.Tensor | None = None,
) -> torch.Tensor:
    """Block-sparse (dense when `lists` is None), optionally low-bit attention through the custom op
    (inference only: the op has no backward). `perm` (H, L), self-attention: `lists` are of the sequence
    reordered per head (row i is row perm[h, i]); inputs, `mask` and output stay in the model's order
    (the Triton kernel reads and writes through the order, the torch path gathers)."""
    b, h, lq, d = q.shape
    lk = k.shape[2]
    if perm is not None and (lq != lk or perm.shape != (h, lq)):
        raise AttentionInputError(
            f"a per-head order of shape {tuple(perm.shape)} does not fit attention of {h} heads, "
            f"{lq} queries and {lk} keys (it reorders self-attention: ({h}, {lq}))"
        )
    if k.shape[1] != h:
        k, v = k.repeat_interleave(h // k.shape[1], dim=1), v.repeat_interleave(h // k.shape[1], dim=1)
    if is_causal:
        from seed_core.attention import causal_mask

        causal = causal_mask(lq, lk, q.device)
        mask = (
            causal
            if mask is None
            else (mask & causal if mask.dtype == torch.bool else mask.masked_fill(~causal, float("-inf")))
        )
    lists = lists or BlockLists.dense(lq, lk, block, q.device)
    key_bias, full = split_mask(mask, b, lk)
    return _block_sparse_op(
        q, k, v, lists.index, lists.count, lists.block, qk_bits, pv_bits,
        1.0 / math.sqrt(d) if scale is None else scale, key_bias, full, allow_triton, perm,
    )  # fmt: skip


def masked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lists: BlockLists,
    *,
    perm: torch.Tensor | None = None,
    scale: float | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """What `sparse_attention` computes in 16 bits, as one masked sdpa that autograd goes through (the
    custom op has no backward): for training with the masks in the loop (`seed tune`). The block mask is
    expanded to (H, L, L), so only for the sequence lengths a model trains at."""
    lq, lk = q.shape[2], k.shape[2]
    if k.shape[1] != q.shape[1]:
        k, v = (
            k.repeat_interleave(q.shape[1] // k.shape[1], 1),
            v.repeat_interleave(q.shape[1] // k.shape[1], 1),
        )
    table = lists.to_mask(math.ceil(lk / lists.block))  # (Bm, Hm, nQb, nKb), in the order
    full = table.repeat_interleave(lists.block, -2).repeat_interleave(lists.block, -1)[..., :lq, :lk]
    if perm is not None:  # back to the model's order: token a sits at row inverse[h, a] of the order
        inverse = torch.argsort(perm, dim=-1)
        full = full.expand(-1, q.shape[1], -1, -1)
        rows = inverse[None, :, :, None].expand(full.shape[0], -1, -1, lk)
        full = full.gather(2, rows).gather(3, inverse[None, :, None, :].expand(full.shape[0], -1, lq, -1))
    extra = _additive_mask(mask, False, (q.shape[0], 1, lq, lk), q.device)
    bias = torch.zeros(full.shape, dtype=q.dtype, device=q.device).masked_fill(~full, float("-inf"))
    bias = bias if extra is None else bias + extra.to(q.dtype)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)


def flex_block_mask(table: torch.Tensor, block: int, lq: int, lk: int):  # type: ignore[no-untyped-def]
    """A FlexAttention BlockMask from a (1, H, nQb, nKb) bool table (build once per plan, reuse).

    Built from the block lists directly: `create_block_mask` evaluates the mask function on every
    (query, key) pair, which at N = 32K and 24 heads asks for 192 GiB. A kept block is kept whole, so
    when the lengths fill whole blocks every kept block is a "full" one, which the fused kernel runs with
    no mask function; the mask function stays for the eager path (which applies it to the whole score
    matrix, block lists or not) and for a last, partial block."""
    from torch.nn.attention.flex_attention import BlockMask

    count = table.sum(-1, dtype=torch.int32)  # (1, H, nQb)
    index = torch.argsort(table.to(torch.int8), dim=-1, descending=True, stable=True).to(torch.int32)

    def mask_mod(b, h, q_idx, kv_idx):  # type: ignore[no-untyped-def]
        return table[0, h, q_idx // block, kv_idx // block]

    whole = lq % block == 0 and lk % block == 0
    none = (torch.zeros_like(count), torch.zeros_like(index))
    blocks = (*none, count, index) if whole else (count, index, None, None)  # (partial..., full...)
    return BlockMask.from_kv_blocks(*blocks, BLOCK_SIZE=block, mask_mod=mask_mod, seq_lengths=(lq, lk))


def flex_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    block_mask: Any = None,
    *,
    scale: float | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Block-sparse attention with PyTorch's FlexAttention on a BlockMask (`flex_block_mask`), or dense
    with None; a per-key `mask` becomes a score_mod."""
    from torch.nn.attention.flex_attention import flex_attention as flex

    b, h, _, _ = q.shape
    lk = k.shape[2]
    key_bias, full = split_mask(mask, b, lk)
    if full is not None:
        raise AttentionInputError(
            "the flex backend takes per-key masks only; use the 'paro' or 'sdpa' backend"
        )
    score_mod = None
    if key_bias is not None:
        bias = key_bias

        def score_mod(score, bb, hh, q_idx, kv_idx):  # type: ignore[no-untyped-def]
            return score + bias[bb, hh if bias.shape[1] > 1 else 0, kv_idx]

    bm = block_mask
    if q.device.type == "cuda":  # FlexAttention is fast only compiled (a fused Triton kernel)
        return _compiled_flex()(
            q, k, v, score_mod=score_mod, block_mask=bm, scale=scale, enable_gqa=k.shape[1] != h
        )  # type: ignore[no-any-return]
    with warnings.catch_warnings():  # elsewhere its eager path is the reference; say so once, not per call
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        warn_once("seed-attn: FlexAttention runs unfused off CUDA (the whole score matrix); correct but slow")
        out = flex(q, k, v, score_mod=score_mod, block_mask=bm, scale=scale, enable_gqa=k.shape[1] != h)
    return out  # type: ignore[return-value]


@functools.cache
def _compiled_flex():  # type: ignore[no-untyped-def]
    from torch.nn.attention.flex_attention import flex_attention as flex

    return torch.compile(flex, dynamic=False)
