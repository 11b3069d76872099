"""The torch block-sparse / low-bit path against the float64 masked reference."""

from __future__ import annotations

import pytest
import torch

from seed_attn.sparse import BlockLists, block_sparse_attention, quantize_blocks, reference_attention


def _qkv(b=2, h=3, lq=150, lk=150, d=32, hk=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, lq, d, generator=gen)
    k = torch.randn(b, hk or h, lk, d, generator=gen) + 0.5  # an offset that K smoothing removes
    v = torch.randn(b, hk or h, lk, d, generator=gen)
    return q, k, v


def _random_block_mask(h, n_q, n_k, density, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(1, h, n_q, n_k, generator=gen) < density
    mask[..., torch.arange(n_q), torch.arange(n_q) % n_k] = True  # every row keeps a block
    return mask


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("lq,lk", [(150, 150), (64, 200), (129, 63)])  # odd lengths, padding
def test_sparse_matches_the_float64_reference(lq, lk):
    q, k, v = _qkv(lq=lq, lk=lk)
    bs = 32
    mask = _random_block_mask(3, -(-lq // bs), -(-lk // bs), 0.5)
    lists = BlockLists.from_mask(mask, bs)
    out = block_sparse_attention(q, k, v, lists)
    ref = reference_attention(q, k, v, mask, block=bs)
    assert out.shape == (2, 3, lq, 32) and torch.isfinite(out).all()
    assert _rel(out, ref) < 1e-5
    # and chunked over query blocks gives the same
    small = block_sparse_attention(q, k, v, lists, chunk_bytes=1)
    assert _rel(small, ref) < 1e-5


def test_dense_lists_equal_full_attention_with_masks_and_gqa():
    q, k, v = _qkv(h=4, hk=2, lq=70, lk=90)
    keys = torch.rand(2, 1, 1, 90, generator=torch.Generator().manual_seed(1)) > 0.2
    out = block_sparse_attention(q, k, v, mask=keys, block=16)
    ref = reference_attention(q, k, v, mask=keys)
    assert _rel(out, ref) < 1e-5
    causal = block_sparse_attention(q[:, :, :70], k[:, :, :70], v[:, :, :70], is_causal=True, block=16)
    tri = torch.ones(70, 70, dtype=torch.bool).tril()
    assert _rel(causal, reference_attention(q[:, :, :70], k[:, :, :70], v[:, :, :70], mask=tri)) < 1e-5


@pytest.mark.parametrize(
    "qk_bits,pv_bits,bound", [(8, 16, 0.02), (8, 8, 0.03), (4, 16, 0.25), (4, 4, 0.35), (16, 8, 0.02)]
)
def test_low_bit_error_is_bounded(qk_bits, pv_bits, bound):
    q, k, v = _qkv(lq=256, lk=256, d=64)
    mask = _random_block_mask(3, 4, 4, 0.6)
    ref = reference_attention(q, k, v, mask, block=64)
    out = block_sparse_attention(q, k, v, BlockLists.from_mask(mask, 64), qk_bits=qk_bits, pv_bits=pv_bits)
    assert _rel(out, ref) < bound, _rel(out, ref)


def test_quantize_blocks_and_lists_round_trip():
    x = torch.randn(1, 2, 100, 8)
    xi, scale = quantize_blocks(x, 32, 8)
    assert xi.dtype == torch.int8 and xi.shape == (1, 2, 128, 8) and scale.shape == (1, 2, 4)
    back = (xi.float().view(1, 2, 4, 32, 8) * scale[..., None, None]).view(1, 2, 128, 8)[:, :, :100]
    assert (back - x).abs().max() <= scale.max() / 2 + 1e-6
    mask = _random_block_mask(2, 5, 7, 0.4)
    lists = BlockLists.from_mask(mask, 16)
    assert torch.equal(lists.to_mask(7), mask)
    assert lists.density(7) == pytest.approx(float(mask.float().mean()))
    with pytest.raises(ValueError, match="at least one"):
        BlockLists.from_mask(torch.zeros(2, 2, dtype=torch.bool), 16)
