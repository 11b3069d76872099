from __future__ import annotations

import pytest
import torch
from torch import nn

from seed_core import hookimpl
from seed_core.attention import (
    attention,
    attention_backend,
    causal_mask,
    current_backend,
    exact_attention,
    math_attention,
    set_attention_backend,
)
from seed_core.errors import AttentionInputError, UnknownAttentionBackendError
from seed_core.specs import AttentionBackendSpec

SHAPES = [  # (B, H, Hkv, Lq, Lk, D, Dv)
    (1, 1, 1, 1, 1, 8, 8),
    (2, 4, 4, 17, 17, 16, 16),
    (2, 4, 4, 5, 23, 32, 16),
    (1, 8, 2, 9, 9, 64, 64),  # grouped-query attention
    (3, 2, 1, 12, 30, 8, 8),
]


def _qkv(b, h, hkv, lq, lk, d, dv, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, h, lq, d, generator=g),
        torch.randn(b, hkv, lk, d, generator=g),
        torch.randn(b, hkv, lk, dv, generator=g),
    )


def _naive(q, k, v, mask=None, causal=False, scale=None):
    """Loop-free but independent reference: explicit repeat, explicit softmax by exp / sum."""
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    s = torch.einsum("bhqd,bhkd->bhqk", q.double(), k.double()) * scale
    if causal:
        s = s.masked_fill(~causal_mask(q.shape[2], k.shape[2]), float("-inf"))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask.double()
    p = (s - s.amax(-1, keepdim=True)).exp()
    return torch.einsum("bhqk,bhkd->bhqd", p / p.sum(-1, keepdim=True), v.double()).float()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("variant", ["plain", "bool-mask", "float-mask", "causal", "causal+mask", "scale"])
def test_sdpa_and_math_agree(seed_registry, shape, variant):
    q, k, v = _qkv(*shape)
    b, h, _, lq, lk, _, _ = shape
    kwargs: dict = {}
    if "mask" in variant:
        g = torch.Generator().manual_seed(1)
        if variant == "float-mask":
            kwargs["mask"] = torch.randn(b, 1, lq, lk, generator=g)
        else:
            keep = torch.rand(b, h, lq, lk, generator=g) > 0.4
            keep[..., 0] = keep[..., -1] = True  # every query row must see a key (the contract)
            kwargs["mask"] = keep
    if variant.startswith("causal"):
        kwargs["is_causal"] = True
    if variant == "scale":
        kwargs["scale"] = 0.3
    reference = _naive(q, k, v, kwargs.get("mask"), kwargs.get("is_causal", False), kwargs.get("scale"))
    for backend in ("sdpa", "math"):
        out = attention(q, k, v, backend=backend, **kwargs)
        assert out.shape == (b, h, lq, v.shape[-1]) and out.dtype == q.dtype
        torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-5)


def test_causal_is_bottom_right_aligned_for_a_kv_cache(seed_registry):
    # the last 3 queries against 7 cached keys equal the last 3 rows of full causal attention
    q, k, v = _qkv(1, 2, 2, 7, 7, 8, 8)
    full = attention(q, k, v, is_causal=True)
    tail = attention(q[:, :, -3:], k, v, is_causal=True)
    torch.testing.assert_close(tail, full[:, :, -3:], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_agrees_with_the_reference(seed_registry, dtype):
    q, k, v = _qkv(2, 4, 2, 9, 13, 16, 16)
    reference = _naive(q, k, v, causal=True)
    for backend in ("sdpa", "math"):
        out = attention(q.to(dtype), k.to(dtype), v.to(dtype), is_causal=True, backend=backend)
        assert out.dtype == dtype
        torch.testing.assert_close(out.float(), reference, rtol=0, atol=3e-2)


def test_float_mask_with_causal(seed_registry):
    q, k, v = _qkv(2, 2, 2, 6, 10, 8, 8)
    bias = torch.randn(2, 1, 6, 10, generator=torch.Generator().manual_seed(3))
    reference = _naive(q, k, v, mask=bias, causal=True)
    for backend in ("sdpa", "math"):
        torch.testing.assert_close(
            attention(q, k, v, mask=bias, is_causal=True, backend=backend), reference, rtol=1e-4, atol=1e-5
        )


def test_integer_mask_is_refused(seed_registry):
    q, k, v = _qkv(1, 2, 2, 4, 4, 8, 8)
    with pytest.raises(AttentionInputError, match="mask must be bool"):
        attention(q, k, v, mask=torch.ones(4, 4, dtype=torch.long))


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        (((2, 3, 4), (2, 3, 4), (2, 3, 4)), "expects 4-D"),
        (((1, 4, 5, 8), (1, 3, 5, 8), (1, 3, 5, 8)), "multiple of key/value heads"),
        (((1, 4, 5, 8), (1, 4, 5, 16), (1, 4, 5, 8)), "same head size"),
        (((1, 4, 5, 8), (1, 4, 6, 8), (1, 4, 5, 8)), "do not fit"),
    ],
)
def test_shape_contract_errors(seed_registry, shapes, message):
    with pytest.raises(AttentionInputError, match=message):
        attention(*(torch.zeros(s) for s in shapes))


def test_bad_mask_shape(seed_registry):
    q, k, v = _qkv(1, 2, 2, 4, 6, 8, 8)
    with pytest.raises(AttentionInputError, match="does not broadcast"):
        attention(q, k, v, mask=torch.ones(4, 4, dtype=torch.bool))


class Recorder:
    """A plugin backend that records that it ran and refuses masks."""

    calls: list[str]

    def __init__(self) -> None:
        self.calls = []

    @hookimpl
    def seed_register_attention_backends(self, register):
        def fn(q, k, v, **kwargs):
            self.calls.append("recorder")
            return math_attention(q, k, v, **kwargs)

        register(
            AttentionBackendSpec(
                "recorder",
                fn,
                supports=lambda q, k, v, mask, is_causal: (
                    "masks are not supported" if mask is not None else None
                ),
            )
        )


class Layer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention_backend: str | None = None

    def forward(self, q, k, v):
        return attention(q, k, v, backend=self.attention_backend)


def test_backend_selection_precedence(seed_registry_factory):
    recorder = Recorder()
    seed_registry_factory(recorder)
    q, k, v = _qkv(1, 2, 2, 4, 4, 8, 8)
    assert current_backend() == "sdpa"
    attention(q, k, v)
    assert recorder.calls == []
    with attention_backend("recorder"):  # the context manager
        assert current_backend() == "recorder"
        attention(q, k, v)
        assert recorder.calls == ["recorder"]
        attention(q, k, v, backend="math")  # an explicit (per-module) backend wins over the context
        assert recorder.calls == ["recorder"]
    assert current_backend() == "sdpa"

    model = nn.Sequential(Layer(), nn.Sequential(Layer(), nn.Linear(2, 2)))
    assert set_attention_backend(model, "recorder") == 2
    model[0](q, k, v)
    model[1][0](q, k, v)
    assert recorder.calls == ["recorder"] * 3
    assert set_attention_backend(model, None) == 2
    model[0](q, k, v)
    assert len(recorder.calls) == 3


def test_exact_attention_sets_the_layers_aside_and_restores_them(seed_registry_factory):
    recorder = Recorder()
    seed_registry_factory(recorder)
    q, k, v = _qkv(1, 2, 2, 4, 4, 8, 8)
    model = nn.Sequential(Layer(), Layer())
    set_attention_backend(model, "recorder")
    with attention_backend("recorder"), exact_attention(model):
        assert current_backend() == "sdpa" and [m.attention_backend for m in model] == [None, None]
        model[0](q, k, v)
        attention(q, k, v)
    assert recorder.calls == []
    with pytest.raises(RuntimeError), exact_attention(model):
        raise RuntimeError  # restored however the block ends
    model[1](q, k, v)
    assert recorder.calls == ["recorder"] and model[0].attention_backend == "recorder"


def test_backend_refusal_and_unknown_names(seed_registry_factory):
    seed_registry_factory(Recorder())
    q, k, v = _qkv(1, 2, 2, 4, 4, 8, 8)
    with pytest.raises(AttentionInputError, match="'recorder' cannot run this call: masks are not supported"):
        attention(q, k, v, mask=torch.ones(4, 4, dtype=torch.bool), backend="recorder")
    with pytest.raises(UnknownAttentionBackendError, match="Did you mean 'sdpa'"):
        attention(q, k, v, backend="sdp")
    with pytest.raises(UnknownAttentionBackendError):
        with attention_backend("flash9"):
            pass
    with pytest.raises(UnknownAttentionBackendError):
        set_attention_backend(nn.Linear(1, 1), "nope")


def test_low_rank_masks_broadcast(seed_registry):
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 2, 5, 8, generator=gen) for _ in range(3))
    keys = torch.tensor([True, True, False, True, False])
    reference = attention(q, k, v, mask=keys.view(1, 1, 1, 5), backend="math")
    for mask in (keys, keys[None], keys[None, None]):  # 1-D to 3-D, as the contract allows
        torch.testing.assert_close(attention(q, k, v, mask=mask), reference, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(attention(q, k, v, mask=mask, backend="math"), reference)
