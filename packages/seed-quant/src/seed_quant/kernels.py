"""Triton kernels for the quantized Linear layers on CUDA.

- `int8_matmul`: INT8 x INT8 -> INT32 GEMM with both operands K-major (the layout that reaches Hopper's
  INT8 tensor cores from Triton: 1051 TOP/s at 8192³ on an H100 against 908 for `torch._int_mm`, see
  ../shared/reference/notes-gpu-anchors.md) and the dequantization fused into the epilogue:
  y = acc · x_scale[:, None] · w_scale[None, :] + bias, written once in the output dtype.
- `quantize_rows`: dynamic per-token quantization (INT8 or e4m3) of activations in one kernel, with the
  SmoothQuant multiply fused, instead of the six passes over memory that eager PyTorch makes.
- `int4_matmul`: fused INT4 dequantize-matmul, y = x · dequant(W)ᵀ, for `Int4Linear`.

INT4 details:
W is stored as in `formats`: byte j of row n holds column j (low nibble) and column j + K/2 (high
nibble), with a float16 scale and a uint8 zero per group of columns. Each program owns a (BM, BN) tile of
y and walks the packed columns in steps of BK: one load of W's bytes gives two (BN, BK) weight tiles, the
low and high halves of K, which meet the matching two tiles of x. Weights never exist in 16 bits in
memory, which is what makes INT4 pay off when the GEMM is bound by reading weights.

The tests run it under `TRITON_INTERPRET=1` against `formats.dequantize_int4` (the kernel is built on
first use, so the interpreter setting is read then).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import triton
import triton.language as tl


def _int4_mm(
    X,
    W,
    S,
    Z,
    Y,
    M,
    N,
    HALF,
    GROUP,
    sx_m,
    sx_k,
    sw_n,
    sw_k,
    ss_n,
    sz_n,
    sy_m,
    sy_n,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BM + tl.arange(0, BM)
    rn = pid_n * BN + tl.arange(0, BN)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for j0 in range(0, HALF, BK):
        rk = j0 + tl.arange(0, BK)  # packed column = low-half column
        in_k = rk < HALF
        w_mask = (rn[:, None] < N) & in_k[None, :]
        packed = tl.load(W + rn[:, None] * sw_n + rk[None, :] * sw_k, mask=w_mask, other=0)  # (BN, BK)
        g_lo = rk // GROUP
        g_hi = (rk + HALF) // GROUP
        s_lo = tl.load(S + rn[:, None] * ss_n + g_lo[None, :], mask=w_mask, other=0.0).to(tl.float32)
        s_hi = tl.load(S + rn[:, None] * ss_n + g_hi[None, :], mask=w_mask, other=0.0).to(tl.float32)
        z_lo = tl.load(Z + rn[:, None] * sz_n + g_lo[None, :], mask=w_mask, other=0).to(tl.float32)
        z_hi = tl.load(Z + rn[:, None] * sz_n + g_hi[None, :], mask=w_mask, other=0).to(tl.float32)
        w_lo = ((packed & 0xF).to(tl.float32) - z_lo) * s_lo
        w_hi = ((packed >> 4).to(tl.float32) - z_hi) * s_hi
        x_mask = (rm[:, None] < M) & in_k[None, :]
        x_lo = tl.load(X + rm[:, None] * sx_m + rk[None, :] * sx_k, mask=x_mask, other=0.0)
        x_hi = tl.load(X + rm[:, None] * sx_m + (rk + HALF)[None, :] * sx_k, mask=x_mask, other=0.0)
        acc += tl.dot(x_lo, tl.trans(w_lo.to(x_lo.dtype)))
        acc += tl.dot(x_hi, tl.trans(w_hi.to(x_hi.dtype)))
    y_mask = (rm[:, None] < M) & (rn[None, :] < N)
    tl.store(Y + rm[:, None] * sy_m + rn[None, :] * sy_n, acc.to(Y.dtype.element_ty), mask=y_mask)


def _int8_mm(
    A,
    B,
    AS,
    BS,
    BIAS,
    Y,
    M,
    N,
    K,
    sa_m,
    sa_k,
    sb_n,
    sb_k,
    sy_m,
    sy_n,
    HAS_BIAS: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    # a 1-D grid walked in groups of GROUP_M row tiles: the programs that run together share B's column
    # tiles and A's row tiles in L2 (the ordering of Triton's matmul tutorial)
    pid = tl.program_id(0)
    tiles_m, tiles_n = tl.cdiv(M, BM), tl.cdiv(N, BN)
    in_group = GROUP_M * tiles_n
    first_m = (pid // in_group) * GROUP_M
    group_rows = tl.minimum(tiles_m - first_m, GROUP_M)
    pid_m = first_m + (pid % in_group) % group_rows
    pid_n = (pid % in_group) // group_rows
    rm = pid_m * BM + tl.arange(0, BM)
    rn = pid_n * BN + tl.arange(0, BN)
    # rows past M and columns past N read a valid row again (modulo) instead of a masked load; their
    # results are never stored, and the loads stay unmasked but for K's tail
    am, bn = rm % M, rn % N
    acc = tl.zeros((BM, BN), dtype=tl.int32)
    for k0 in range(0, K, BK):
        rk = k0 + tl.arange(0, BK)
        a = tl.load(A + am[:, None] * sa_m + rk[None, :] * sa_k, mask=rk[None, :] < K, other=0)
        b = tl.load(B + bn[:, None] * sb_n + rk[None, :] * sb_k, mask=rk[None, :] < K, other=0)
        acc += tl.dot(a, tl.trans(b))  # (BM, BK) x (BK, BN), both K-major
    a_scale = tl.load(AS + am)
    b_scale = tl.load(BS + bn)
    y = acc.to(tl.float32) * a_scale[:, None] * b_scale[None, :]
    if HAS_BIAS:
        y += tl.load(BIAS + bn).to(tl.float32)[None, :]
    y_mask = (rm[:, None] < M) & (rn[None, :] < N)
    tl.store(Y + rm[:, None] * sy_m + rn[None, :] * sy_n, y.to(Y.dtype.element_ty), mask=y_mask)


#: launch options the INT8 GEMM is autotuned over on CUDA, per (M, N, K): (BM, BN, BK, warps, stages).
#: The first is the fixed choice of session 11 (measured there: 0.84x - 1.18x of cuBLAS bf16 for the
#: whole W8A8 layer); the others are the shapes Triton's Hopper matmuls favour for 8-bit operands (a
#: 128-byte K tile). `test_int8_gemm_configs_fit_hopper` compiles each for sm_90 and checks its shared
#: memory against the 227 KB a block may hold.
INT8_CONFIGS: tuple[tuple[int, int, int, int, int], ...] = (
    (128, 128, 64, 8, 3),
    (128, 256, 128, 8, 3),
    (256, 128, 128, 8, 3),
    (128, 128, 128, 8, 4),
    (128, 128, 128, 4, 4),
    (128, 256, 64, 8, 4),
    (64, 128, 128, 4, 4),
    (64, 64, 128, 4, 5),
)


def _quantize_rows(
    X, SMOOTH, Q, S, K, sx_m, sq_m, QMAX, HAS_SMOOTH: tl.constexpr, FP8: tl.constexpr, BK: tl.constexpr
):
    row = tl.program_id(0)
    amax = tl.zeros((BK,), dtype=tl.float32)
    for k0 in range(0, K, BK):  # pass 1: the row's largest magnitude
        rk = k0 + tl.arange(0, BK)
        x = tl.load(X + row * sx_m + rk, mask=rk < K, other=0.0).to(tl.float32)
        if HAS_SMOOTH:
            x *= tl.load(SMOOTH + rk, mask=rk < K, other=0.0)
        amax = tl.maximum(amax, tl.abs(x))
    scale = tl.maximum(tl.max(amax, axis=0), 1e-12) / QMAX
    tl.store(S + row, scale)
    for k0 in range(0, K, BK):  # pass 2: the codes (the row is in L2 now)
        rk = k0 + tl.arange(0, BK)
        x = tl.load(X + row * sx_m + rk, mask=rk < K, other=0.0).to(tl.float32)
        if HAS_SMOOTH:
            x *= tl.load(SMOOTH + rk, mask=rk < K, other=0.0)
        v = x / scale
        if FP8:
            q = tl.minimum(tl.maximum(v, -QMAX), QMAX).to(Q.dtype.element_ty, fp_downcast_rounding="rtne")
        else:
            v = tl.where(v >= 0, tl.floor(v + 0.5), tl.ceil(v - 0.5))  # round half away from zero
            q = tl.minimum(tl.maximum(v, -QMAX), QMAX).to(tl.int8)
        tl.store(Q + row * sq_m + rk, q, mask=rk < K)


@functools.cache
def _kernel(interpret: bool, name: str = "int4") -> Any:
    # interpret is part of the cache key: triton.jit reads TRITON_INTERPRET when it decorates
    kernel = triton.jit(
        {"int4": _int4_mm, "int8": _int8_mm, "quant": _quantize_rows}[name.removesuffix("-tuned")]
    )
    if name != "int8-tuned":
        return kernel
    configs = [
        triton.Config({"BM": bm, "BN": bn, "BK": bk, "GROUP_M": 8}, num_warps=w, num_stages=st)
        for bm, bn, bk, w, st in INT8_CONFIGS
    ]
    return triton.autotune(configs, key=["M", "N", "K"])(kernel)


def quantize_rows(
    x: torch.Tensor, smooth: torch.Tensor | None = None, *, fp8: bool = False, block: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token quantization of x (M, K), times `smooth` (K,) first if given -> codes (M, K) int8 or
    e4m3 and float32 scales (M, 1); what `formats.quantize_tokens_*` compute, in one kernel."""
    m, k = x.shape
    x = x if x.stride(1) == 1 else x.contiguous()
    q = torch.empty(m, k, dtype=torch.float8_e4m3fn if fp8 else torch.int8, device=x.device)
    scale = torch.empty(m, 1, dtype=torch.float32, device=x.device)
    qmax = float(torch.finfo(torch.float8_e4m3fn).max) if fp8 else 127.0
    _kernel(_interpret(), "quant")[(m,)](
        x,
        smooth if smooth is not None else x,
        q,
        scale,
        k,
        x.stride(0),
        q.stride(0),
        qmax,
        HAS_SMOOTH=smooth is not None,
        FP8=fp8,
        BK=min(block, triton.next_power_of_2(k)),
    )
    return q, scale


def int8_matmul(
    a: torch.Tensor,
    a_scale: torch.Tensor,
    b: torch.Tensor,
    b_scale: torch.Tensor,
    bias: torch.Tensor | None,
    out_dtype: torch.dtype,
    *,
    block: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """INT8 codes a (M, K) and b (N, K) with float32 scales a_scale (M,) / (M, 1) and b_scale (N,) ->
    a·bᵀ dequantized, plus bias, as (M, N) in `out_dtype`.

    Without `block`, on a GPU the launch options are autotuned over `INT8_CONFIGS` on the first call of
    each (M, N, K) (a few milliseconds per shape, then cached for the process); under the interpreter the
    first config runs. `block` = (BM, BN, BK) fixes them."""
    m, k = a.shape
    n = b.shape[0]
    y = torch.empty(m, n, dtype=out_dtype, device=a.device)
    args = (a, b, a_scale.reshape(-1), b_scale, bias if bias is not None else b_scale, y, m, n, k)
    strides = (a.stride(0), a.stride(1), b.stride(0), b.stride(1), y.stride(0), y.stride(1))
    if block is None and not _interpret():

        def grid(meta: dict[str, Any]) -> tuple[int]:
            return (triton.cdiv(m, meta["BM"]) * triton.cdiv(n, meta["BN"]),)

        _kernel(False, "int8-tuned")[grid](*args, *strides, HAS_BIAS=bias is not None)
        return y
    bm, bn, bk = block or INT8_CONFIGS[0][:3]
    _kernel(_interpret(), "int8")[(triton.cdiv(m, bm) * triton.cdiv(n, bn),)](
        *args,
        *strides,
        HAS_BIAS=bias is not None,
        BM=bm,
        BN=bn,
        BK=bk,
        GROUP_M=8,
        num_warps=8 if bm * bn >= 128 * 128 else 4,  # INT8_CONFIGS[0]'s 8 warps and 3 stages
        num_stages=3,
    )
    return y


def _interpret() -> bool:
    import os

    return os.environ.get("TRITON_INTERPRET") == "1"


def int4_matmul(
    x: torch.Tensor,
    packed: torch.Tensor,
    scale: torch.Tensor,
    zero: torch.Tensor,
    group: int,
    *,
    block: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """x (M, K) times the INT4 weights (N, K/2 packed) transposed -> (M, N) in x's dtype."""
    m, k = x.shape
    n, half = packed.shape
    if k != 2 * half:
        raise ValueError(f"x has {k} columns but the packed weights stand for {2 * half}")
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    bm, bn, bk = block or ((16 if m <= 16 else 64), 64, 32)
    grid = (triton.cdiv(m, bm), triton.cdiv(n, bn))
    _kernel(_interpret())[grid](
        x,
        packed,
        scale,
        zero,
        y,
        m,
        n,
        half,
        group,
        x.stride(0),
        x.stride(1),
        packed.stride(0),
        packed.stride(1),
        scale.stride(0),
        zero.stride(0),
        y.stride(0),
        y.stride(1),
        BM=bm,
        BN=bn,
        BK=bk,
    )
    return y
