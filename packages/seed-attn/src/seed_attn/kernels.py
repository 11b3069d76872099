"""Triton kernel: block-sparse attention forward over per-query-block lists of key blocks, online softmax
in base 2, Q·Kᵀ in bf16/fp16 or INT8/INT4 (int8 storage, int32 dot, per-block scales), P·V in bf16/fp16 or
8/4 bits (P with the static scale of `sparse.PMAX`, V smoothed and quantized per key block).

It computes what `sparse.block_sparse_attention` specifies (the tests compare the two under
`TRITON_INTERPRET=1`). The kernel is built on first use, so the interpreter setting is read then.
The grid puts query blocks innermost, so the K/V of one head stay in L2 while its query blocks run.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import torch
import triton
import triton.language as tl

from seed_attn.sparse import PMAX, QMAX, BlockLists

LOG2E = tl.constexpr(1.4426950408889634)  # a kernel may read a global only when it is constexpr
HEAD_DIMS = (16, 32, 64, 128)


def _fwd(
    Q,
    K,
    V,
    QS,
    KS,
    VS,
    VM,
    BIAS,
    Out,
    IDX,
    CNT,
    PERM,
    sq_b,
    sq_h,
    sq_l,
    sk_b,
    sk_h,
    sk_l,
    sv_b,
    sv_h,
    sv_l,
    sqs_b,
    sqs_h,
    sks_b,
    sks_h,
    svs_b,
    svs_h,
    svm_b,
    svm_h,
    sbias_b,
    sbias_h,
    so_b,
    so_h,
    so_l,
    si_b,
    si_h,
    si_q,
    sc_b,
    sc_h,
    sp_h,
    H,
    LQ,
    LK,
    sm_scale,
    BLOCK: tl.constexpr,
    D: tl.constexpr,
    DV: tl.constexpr,
    QK_INT: tl.constexpr,
    PV_INT: tl.constexpr,
    P_MAX: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_PERM: tl.constexpr,
):
    # HAS_PERM: row i of the reordered sequence is row PERM[h, i] of Q, K, V, BIAS and Out, so the reorder
    # costs no pass over memory of its own; quantized Q / K / V codes come reordered already (`_quantize`)
    qb = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)  # 64-bit offsets: large video batches pass 2**31 elements
    h = (bh % H).to(tl.int64)
    rows = qb * BLOCK + tl.arange(0, BLOCK)
    cols = tl.arange(0, BLOCK)
    d = tl.arange(0, D)
    dv = tl.arange(0, DV)
    q_rows = rows
    if HAS_PERM:
        q_rows = tl.load(PERM + h * sp_h + rows, mask=rows < LQ, other=0).to(tl.int64)
    q_at = rows if QK_INT else q_rows
    q = tl.load(Q + b * sq_b + h * sq_h + q_at[:, None] * sq_l + d[None, :], mask=rows[:, None] < LQ, other=0)
    if QK_INT:
        q_scale = tl.load(QS + b * sqs_b + h * sqs_h + qb) * LOG2E  # sm_scale is inside the int8 Q
    else:
        q_scale = sm_scale * LOG2E
    m_i = tl.full([BLOCK], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK], tl.float32)
    acc = tl.zeros([BLOCK, DV], tl.float32)
    count = tl.load(CNT + b * sc_b + h * sc_h + qb)
    for j in range(0, count):
        kb = tl.load(IDX + b * si_b + h * si_h + qb * si_q + j)
        keys = kb * BLOCK + cols
        key_ok = keys < LK
        key_rows = keys
        if HAS_PERM:
            key_rows = tl.load(PERM + h * sp_h + keys, mask=key_ok, other=0).to(tl.int64)
        k_at = keys if QK_INT else key_rows
        k = tl.load(
            K + b * sk_b + h * sk_h + k_at[:, None] * sk_l + d[None, :], mask=key_ok[:, None], other=0
        )
        if QK_INT:
            s = tl.dot(q, tl.trans(k), out_dtype=tl.int32).to(tl.float32)
            s = s * (q_scale * tl.load(KS + b * sks_b + h * sks_h + kb))
        else:
            s = tl.dot(q, tl.trans(k)).to(tl.float32) * q_scale
        if HAS_BIAS:
            s += (
                tl.load(BIAS + b * sbias_b + h * sbias_h + key_rows, mask=key_ok, other=float("-inf"))[
                    None, :
                ]
                * LOG2E
            )
        s = tl.where(key_ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with nothing seen yet stay at zero
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v_at = keys if PV_INT else key_rows
        v = tl.load(
            V + b * sv_b + h * sv_h + v_at[:, None] * sv_l + dv[None, :], mask=key_ok[:, None], other=0
        )
        if PV_INT:
            p_int = tl.floor(p * P_MAX + 0.5).to(tl.int8)
            pv = tl.dot(p_int, v, out_dtype=tl.int32).to(tl.float32)
            acc = acc * alpha[:, None] + pv * (tl.load(VS + b * svs_b + h * svs_h + kb) / P_MAX)
        else:
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v).to(tl.float32)
        m_i = m_new
    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    if PV_INT:
        out += tl.load(VM + b * svm_b + h * svm_h + dv)[None, :]
    out = out.to(Out.dtype.element_ty)
    tl.store(Out + b * so_b + h * so_h + q_rows[:, None] * so_l + dv[None, :], out, mask=rows[:, None] < LQ)


def _quantize(
    X,
    MEAN,
    Q,
    S,
    PERM,
    L,
    sx_b,
    sx_h,
    sx_l,
    sm_b,
    sm_h,
    sq_b,
    sq_h,
    sq_l,
    ss_b,
    ss_h,
    sp_h,
    H,
    mul,
    QMAX: tl.constexpr,
    HAS_MEAN: tl.constexpr,
    BLOCK: tl.constexpr,
    D: tl.constexpr,
    HAS_PERM: tl.constexpr,
):
    # one (BLOCK, D) tile of one head: (x * mul - mean), rows past L as zeros, symmetric per-tile scale
    nb = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    rows = nb * BLOCK + tl.arange(0, BLOCK)
    d = tl.arange(0, D)
    ok = rows[:, None] < L
    src = rows
    if HAS_PERM:  # the tile of the reordered sequence: codes and scales come out in that order
        src = tl.load(PERM + h * sp_h + rows, mask=rows < L, other=0).to(tl.int64)
    x = tl.load(X + b * sx_b + h * sx_h + src[:, None] * sx_l + d[None, :], mask=ok, other=0).to(tl.float32)
    x = x * mul
    if HAS_MEAN:
        x = tl.where(ok, x - tl.load(MEAN + b * sm_b + h * sm_h + d)[None, :], 0.0)
    scale = tl.maximum(tl.max(tl.max(tl.abs(x), 1), 0), 1e-12) / QMAX
    tl.store(S + b * ss_b + h * ss_h + nb, scale)
    v = x / scale
    r = tl.floor(v + 0.5)  # round half to even, as torch.round
    r = tl.where(((r - v) == 0.5) & ((r - 2.0 * tl.floor(r * 0.5)) != 0.0), r - 1.0, r)
    r = tl.minimum(tl.maximum(r, -QMAX), QMAX)
    tl.store(Q + b * sq_b + h * sq_h + rows[:, None] * sq_l + d[None, :], r.to(tl.int8))


@functools.cache
def _kernel(interpret: bool, name: str = "fwd") -> Any:
    del interpret  # part of the cache key: triton.jit reads TRITON_INTERPRET when it decorates
    return triton.jit({"fwd": _fwd, "quantize": _quantize}[name])


def quantize_blocks_fused(
    x: torch.Tensor,
    block: int,
    bits: int,
    *,
    mul: float = 1.0,
    mean: torch.Tensor | None = None,
    perm: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`sparse.quantize_blocks(x * mul - mean, block, bits)` in one pass over x (B, H, L, D) (`mean`:
    (B, H, D) float32 or None): int8 codes (B, H, L padded to a multiple of `block`, D) and float32
    scales (B, H, nb). Eager torch makes about ten float32 passes for it; at N = 32K with 24 heads of
    128 that cost INT8 attention about 3 ms on an H200, more than INT8 Q·Kᵀ saves. `perm` (H, L): the
    codes and scales of the sequence reordered per head (row i is x's row perm[h, i]), read in place."""
    b, h, length, d = x.shape
    if mean is not None and mean.shape != (b, h, d):
        raise ValueError(f"mean has shape {tuple(mean.shape)}; x needs {(b, h, d)}")
    perm = _checked_perm(perm, h, length, x.device)
    x = x if x.stride(-1) == 1 else x.contiguous()
    n = math.ceil(length / block)
    codes = torch.empty(b, h, n * block, d, dtype=torch.int8, device=x.device)
    scale = torch.empty(b, h, n, dtype=torch.float32, device=x.device)
    means = mean if mean is not None else scale  # unread without HAS_MEAN
    order = perm if perm is not None else scale  # unread without HAS_PERM
    _kernel(os.environ.get("TRITON_INTERPRET") == "1", "quantize")[(n, b * h)](
        x, means, codes, scale, order, length,
        *x.stride()[:3], *(means.stride()[:2] if mean is not None else (0, 0)), *codes.stride()[:3],
        *scale.stride()[:2], order.stride(0) if perm is not None else 0, h, mul,
        QMAX=QMAX[bits], HAS_MEAN=mean is not None, BLOCK=block, D=d, HAS_PERM=perm is not None,
    )  # fmt: skip
    return codes, scale


def _checked_perm(
    perm: torch.Tensor | None, heads: int, length: int, device: torch.device
) -> torch.Tensor | None:
    """A per-head order (H, L) as the kernels read it (int32, contiguous); a wrong shape is a ValueError."""
    if perm is None:
        return None
    if perm.shape != (heads, length):
        raise ValueError(
            f"perm has shape {tuple(perm.shape)}; {heads} heads of {length} tokens need {(heads, length)}"
        )
    return perm.to(device=device, dtype=torch.int32).contiguous()


def supported(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int, qk_bits: int = 16, pv_bits: int = 16
) -> str | None:
    """Why the kernel cannot take these inputs, or None."""
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    if q.device.type != "cuda" and not interpret:
        return f"the Triton kernel runs on CUDA (or under TRITON_INTERPRET=1), not {q.device.type}"
    if q.shape[-1] not in HEAD_DIMS or v.shape[-1] not in HEAD_DIMS:
        return f"head size {q.shape[-1]} / {v.shape[-1]}: the kernel takes {HEAD_DIMS}"
    if block not in (16, 32, 64, 128):
        return f"block size {block}: the kernel takes 16, 32, 64 or 128"
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return f"dtype {q.dtype}"
    # 8-bit tl.dot needs a reduction of at least 32 on NVIDIA GPUs
    if qk_bits != 16 and q.shape[-1] < 32:
        return f"INT{qk_bits} Q·Kᵀ with head size {q.shape[-1]} (the kernel needs 32 or more)"
    if pv_bits != 16 and block < 32:
        return f"INT{pv_bits} P·V with block {block} (the kernel needs 32 or more)"
    return None


def triton_block_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lists: BlockLists,
    *,
    qk_bits: int = 16,
    pv_bits: int = 16,
    scale: float | None = None,
    key_bias: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    num_warps: int | None = None,
    num_stages: int | None = None,
    perm: torch.Tensor | None = None,
) -> torch.Tensor:
    """q (B, H, Lq, D), k (B, H, Lk, D), v (B, H, Lk, Dv) (repeat GQA heads before), `lists` for blocks of
    `lists.block`; `key_bias` (B, H or 1, Lk) float added to every score row (0 / -inf: key padding).
    `out`: a float32 (B, H, Lq, Dv) buffer to write into (the tests pass one full of NaN).
    `num_warps` / `num_stages`: Triton's launch options (its defaults when None), for tuning.
    `perm` (H, L), self-attention only: `lists` are of the sequence reordered per head (row i is row
    perm[h, i]), and the kernel reads q, k, v and `key_bias` and writes the output through it, so inputs
    and output stay in the model's order (PAROAttention without a gather pass before and after)."""
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))  # the kernel assumes it
    b, h, lq, d = q.shape
    lk, dv = k.shape[2], v.shape[-1]
    if perm is not None and lq != lk:
        raise ValueError(f"perm reorders self-attention; got {lq} queries and {lk} keys")
    perm = _checked_perm(perm, h, lq, q.device)
    bs = lists.block
    n_q = math.ceil(lq / bs)
    if lists.index.shape[-2] != n_q or lists.count.shape[-1] != n_q:
        raise ValueError(f"block lists have {lists.index.shape[-2]} query blocks; {lq} queries need {n_q}")
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    dot_dtype = torch.float16 if q.dtype == torch.float32 else q.dtype  # tensor cores: 16-bit operands
    one = torch.ones(1, 1, 1, device=q.device)
    if qk_bits == 16:
        qk, kk, q_scale, k_scale = q.to(dot_dtype), k.to(dot_dtype), one, one
    else:  # K smoothed by its mean over the keys (softmax is blind to it), sm_scale inside Q's codes
        qk, q_scale = quantize_blocks_fused(q, bs, qk_bits, mul=scale, perm=perm)
        kk, k_scale = quantize_blocks_fused(
            k, bs, qk_bits, mean=k.mean(dim=2, dtype=torch.float32), perm=perm
        )
    if pv_bits == 16:
        vv, v_scale, v_mean = v.to(dot_dtype), one, torch.zeros(1, 1, dv, device=q.device)
    else:
        v_mean = v.mean(dim=2, dtype=torch.float32)  # (B, H, Dv), added back to the output
        vv, v_scale = quantize_blocks_fused(v, bs, pv_bits, mean=v_mean, perm=perm)
    bias = torch.zeros(1, 1, 1, device=q.device)
    if key_bias is not None:
        bias = key_bias.float().expand(b, h, -1)  # broadcast dims get stride 0
    index = lists.index.expand(b, h, -1, -1)
    count = lists.count.expand(b, h, -1)
    if out is None:  # the kernel's store rounds to the buffer's dtype: no float32 copy to convert
        out = torch.empty(b, h, lq, dv, device=q.device, dtype=q.dtype)
    if num_warps is None and bs == 128 and d >= 128:
        # measured on an H200 (N = 32K, D = 128, density 0.25): 8 warps 1835 TFLOP/s, 4 (Triton's) 1254
        num_warps = 8
    grid = (n_q, b * h)
    order = perm if perm is not None else count  # unread without HAS_PERM
    _kernel(os.environ.get("TRITON_INTERPRET") == "1")[grid](
        qk, kk, vv, q_scale, k_scale, v_scale, v_mean, bias, out, index, count, order,
        *qk.stride()[:3], *kk.stride()[:3], *vv.stride()[:3],
        *q_scale.stride()[:2], *k_scale.stride()[:2], *v_scale.stride()[:2], *v_mean.stride()[:2],
        *(bias.stride()[:2] if key_bias is not None else (0, 0)),
        *out.stride()[:3], *index.stride()[:3], *count.stride()[:2],
        order.stride(0) if perm is not None else 0, h, lq, lk, scale,
        BLOCK=bs, D=d, DV=dv, QK_INT=qk_bits != 16, PV_INT=pv_bits != 16,
        P_MAX=PMAX.get(pv_bits, 1), HAS_BIAS=key_bias is not None, HAS_PERM=perm is not None,
        **{k: v for k, v in (("num_warps", num_warps), ("num_stages", num_stages)) if v is not None},
    )  # fmt: skip
    return out.to(q.dtype)
