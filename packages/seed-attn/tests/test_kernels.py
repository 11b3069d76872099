"""The Triton kernel under TRITON_INTERPRET=1 (numpy on the CPU) against the torch path and the float64
reference, at small shapes.

float32 inputs take the fp16 tensor-core path here. bf16 is not tested under the interpreter: its bf16
`tl.dot` returns garbage even for a bare 16x16 product (numpy has no bfloat16); benchmarks/attention.py
checks the bf16 kernel against cuDNN SDPA on a GPU before timing it."""

from __future__ import annotations

import os

import pytest
import torch

from seed_attn.ops import reorder
from seed_attn.sparse import BlockLists, block_sparse_attention, reference_attention

kernels = pytest.importorskip("seed_attn.kernels", reason="triton is not installed")


@pytest.fixture(autouse=True)
def _interpret():
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.fail("TRITON_INTERPRET=1 must be set before triton is imported (see conftest.py)")


def _case(lq, lk, d, h=2, seed=0, density=0.5, bs=16):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, h, n, d, generator=gen) for n in (lq, lk, lk))
    n_q, n_k = -(-lq // bs), -(-lk // bs)
    mask = torch.rand(1, h, n_q, n_k, generator=gen) < density
    mask[..., torch.arange(n_q), torch.arange(n_q) % n_k] = True
    return q, k + 0.3, v, BlockLists.from_mask(mask, bs), mask


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("lq,lk,d", [(48, 48, 16), (37, 53, 32)])  # odd lengths: padded rows and keys
@pytest.mark.parametrize(
    "qk_bits,pv_bits,bound", [(16, 16, 2e-3), (8, 16, 0.02), (8, 8, 0.035), (4, 16, 0.3), (4, 4, 0.4)]
)
def test_kernel_matches_the_reference(lq, lk, d, qk_bits, pv_bits, bound):
    q, k, v, lists, mask = _case(lq, lk, d)
    buffer = torch.full((1, 2, lq, d), float("nan"))
    out = kernels.triton_block_sparse_attention(q, k, v, lists, qk_bits=qk_bits, pv_bits=pv_bits, out=buffer)
    assert out.shape == (1, 2, lq, d) and torch.isfinite(buffer).all()  # every element written
    ref = reference_attention(q, k, v, mask, block=16)
    assert _rel(out, ref) < bound
    torch_path = block_sparse_attention(q, k, v, lists, qk_bits=qk_bits, pv_bits=pv_bits)
    # same quantization; the online softmax rounds P against the running max, the torch path the final one
    assert _rel(out, torch_path) < {16: 1e-3, 8: 0.04, 4: 0.2}[pv_bits], _rel(out, torch_path)


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("length,block", [(37, 16), (64, 32)])
def test_fused_block_quantization_matches_the_torch_one(bits, length, block):
    from seed_attn.sparse import quantize_blocks

    gen = torch.Generator().manual_seed(bits + length)
    x = torch.randn(2, 3, length, 32, generator=gen) * 3 + 0.5
    mean = x.mean(dim=2)
    for mul, m in ((0.125, None), (1.0, mean)):
        codes, scale = kernels.quantize_blocks_fused(x, block, bits, mul=mul, mean=m)
        ref_codes, ref_scale = quantize_blocks(x * mul - (0 if m is None else m[:, :, None]), block, bits)
        assert codes.shape == ref_codes.shape and codes.dtype == torch.int8
        torch.testing.assert_close(scale, ref_scale, rtol=1e-6, atol=0)
        diff = (codes.int() - ref_codes.int()).abs()
        # x / scale may round differently from torch's by an ulp: a tie then goes the other way
        assert int(diff.max()) <= 1 and float((diff > 0).float().mean()) < 1e-3
        assert not codes[:, :, length:].any()  # the padded rows are zeros
    with pytest.raises(ValueError, match="mean has shape"):
        kernels.quantize_blocks_fused(x, block, bits, mean=mean[:, :1])


def test_kernel_writes_the_inputs_dtype():
    q, k, v = (x.half() for x in _case(32, 32, 32)[:3])
    lists = _case(32, 32, 32)[3]
    out = kernels.triton_block_sparse_attention(q, k, v, lists, qk_bits=8)
    ref = kernels.triton_block_sparse_attention(q.float(), k.float(), v.float(), lists, qk_bits=8)
    assert out.dtype == torch.float16 and _rel(out, ref) < 1e-3  # the store's rounding only


def test_kernel_key_padding_bias():
    q, k, v, lists, mask = _case(32, 48, 16)
    keep = torch.ones(1, 48, dtype=torch.bool)
    keep[:, 40:] = False
    bias = torch.zeros(1, 1, 48).masked_fill(~keep[:, None], float("-inf"))
    out = kernels.triton_block_sparse_attention(q, k, v, lists, key_bias=bias)
    ref = reference_attention(q, k, v, mask, block=16, mask=keep[:, None, None, :])
    assert _rel(out, ref) < 2e-3


@pytest.mark.parametrize("length", [48, 37])  # 37: a padded last block, read and written through the order
@pytest.mark.parametrize("qk_bits,pv_bits", [(16, 16), (8, 16), (8, 8), (4, 4)])
def test_the_kernel_reorders_in_its_loads_and_stores(length, qk_bits, pv_bits):
    q, k, v, lists, _ = _case(length, length, 32)
    gen = torch.Generator().manual_seed(length + qk_bits)
    perm = torch.stack([torch.randperm(length, generator=gen) for _ in range(2)])
    bias = torch.zeros(1, 1, length)
    bias[..., perm[0, :5]] = float("-inf")  # padded keys, in the model's order
    buffer = torch.full((1, 2, length, 32), float("nan"))
    fused = kernels.triton_block_sparse_attention(
        q, k, v, lists, qk_bits=qk_bits, pv_bits=pv_bits, key_bias=bias, out=buffer, perm=perm
    )
    assert torch.isfinite(buffer).all()  # every row written, each once, at its place in the model's order
    qp, kp, vp = (reorder(x, perm) for x in (q, k, v))
    bp = reorder(bias.expand(1, 2, length)[..., None], perm)[..., 0]
    gathered = kernels.triton_block_sparse_attention(
        qp, kp, vp, lists, qk_bits=qk_bits, pv_bits=pv_bits, key_bias=bp
    )
    # the same tiles in the same order; only K's and V's means over the keys are summed in another order
    torch.testing.assert_close(fused, reorder(gathered, torch.argsort(perm)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="perm has shape"):
        kernels.triton_block_sparse_attention(q, k, v, lists, perm=perm[:1])


def test_unsupported_inputs_are_named():
    q = torch.randn(1, 1, 16, 24)
    assert "head size 24" in kernels.supported(q, q, q, 16)
    q = torch.randn(1, 1, 16, 16)
    assert "block size 8" in kernels.supported(q, q, q, 8)
    assert kernels.supported(q, q, q, 16) is None
    assert "head size 16" in kernels.supported(q, q, q, 16, qk_bits=8)  # 8-bit tl.dot needs K >= 32
    assert "block 16" in kernels.supported(q, q, q, 16, pv_bits=8)


def test_kernel_compiles_for_hopper():
    # the interpreter ran a kernel that read a module-level float, which the compiler refuses (found on
    # the first H200 run), so every variant the GPU benchmark and the backends take is compiled for sm_90
    from seed_core.testing import compile_for_gpu

    variants = []
    for d in (64, 128):
        perm = d == 128  # each path once with the order fused into its loads and stores, once without
        for qk_int, pv_int in ((False, False), (True, False), (True, True)):
            types = {n: "*fp32" for n in ("QS", "KS", "VS", "VM", "BIAS", "Out")}
            types |= {"Q": "*i8" if qk_int else "*bf16", "K": "*i8" if qk_int else "*bf16"}
            types |= {"V": "*i8" if pv_int else "*bf16", "IDX": "*i32", "CNT": "*i32", "PERM": "*i32"}
            types |= {"sm_scale": "fp32"}
            constexprs = {"BLOCK": 64, "D": d, "DV": d, "QK_INT": qk_int, "PV_INT": pv_int, "P_MAX": 127}
            constexprs |= {"HAS_BIAS": True, "HAS_PERM": perm}
            variants.append(("seed_attn.kernels:_fwd", types, constexprs))
        quantize = {"X": "*bf16", "MEAN": "*fp32", "Q": "*i8", "S": "*fp32", "PERM": "*i32", "mul": "fp32"}
        for block in (64, 128):
            constexprs = {"QMAX": 127, "HAS_MEAN": True, "BLOCK": block, "D": d, "HAS_PERM": perm}
            variants.append(("seed_attn.kernels:_quantize", quantize, constexprs))
    assert all(binary.size > 0 for binary in compile_for_gpu(variants))
