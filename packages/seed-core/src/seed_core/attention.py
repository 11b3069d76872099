"""One attention function for every backbone, with pluggable backends.

Shape contract of ``attention(q, k, v, ...)`` (every backend follows it):

- ``q``: (B, H, Lq, D); ``k``: (B, Hkv, Lk, D); ``v``: (B, Hkv, Lk, Dv), with H a multiple of Hkv
  (grouped-query attention when Hkv < H). Returns (B, H, Lq, Dv) in ``q``'s dtype.
- ``mask``: optional, broadcastable to (B, H, Lq, Lk); bool (True = may attend) or float (added to the
  scores). Every query row must see at least one key; a fully masked row is undefined.
- ``is_causal``: query i sees key j when ``j <= i + (Lk - Lq)``, i.e. the queries are the *last* Lq
  positions of the keys (what a KV cache needs); combined with ``mask`` when both are given.
- ``scale``: defaults to ``1 / sqrt(D)``.

Backbones also declare, around their forward pass, how the sequence is laid out and which time step they
are at (`attention_context`): backends that reorder or window tokens by their place on the image grid
(PARO) and backends whose plan changes with the time step read it with `current_attention_context()`.

Which backend runs: the ``backend`` argument (a module's own setting, see `set_attention_backend`), else the
innermost ``with attention_backend(name):`` block, else ``sdpa``. Backends come from the registry, so a
plugin (PARO, INT8, block-sparse, ...) adds one through ``seed_register_attention_backends``.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seed_core.errors import AttentionInputError
from seed_core.registry import get_registry

DEFAULT_BACKEND = "sdpa"
_active: contextvars.ContextVar[str | None] = contextvars.ContextVar("seed_attention_backend", default=None)


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> None:
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise AttentionInputError(
            f"attention expects 4-D (B, H, L, D) tensors, got q{tuple(q.shape)} k{tuple(k.shape)} "
            f"v{tuple(v.shape)}"
        )
    (b, h, _, d), (bk, hk, lk, dk) = q.shape, k.shape
    if bk != b or v.shape[0] != b or v.shape[1] != hk or v.shape[2] != lk or dk != d:
        raise AttentionInputError(
            f"attention shapes do not fit: q{tuple(q.shape)} k{tuple(k.shape)} v{tuple(v.shape)} "
            "(need equal B, k/v with the same heads and length, q/k with the same head size)"
        )
    if h % hk:
        raise AttentionInputError(f"query heads ({h}) must be a multiple of key/value heads ({hk})")
    if mask is not None:
        if mask.dtype != torch.bool and not mask.is_floating_point():
            raise AttentionInputError(
                f"mask must be bool (True = attend) or floating point (added to scores), got {mask.dtype}"
            )
        target = (b, h, q.shape[2], lk)
        # by hand: torch.broadcast_shapes imports sympy (about 2 s) on first use
        if mask.ndim > 4 or any(
            m not in (1, t) for m, t in zip(mask.shape[::-1], target[::-1], strict=False)
        ):
            raise AttentionInputError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to (B, H, Lq, Lk) = {target}"
            )


@dataclass(frozen=True)
class AttentionContext:
    """What a backbone tells layout-aware backends about its attention calls.

    The sequence is `prefix` tokens (text) followed by one grid per image or video, row-major: (rows,
    columns) or (frames, rows, columns), in order; grids[0] is the one being generated. `t` is the flow
    time of the call, (B,) in [0, 1] (1 = noise), or None outside a sampler.
    """

    prefix: int
    grids: tuple[tuple[int, ...], ...]
    t: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return self.prefix + sum(math.prod(g) for g in self.grids)


_context: contextvars.ContextVar[AttentionContext | None] = contextvars.ContextVar(
    "seed_attention_context", default=None
)


@contextlib.contextmanager
def attention_context(context: AttentionContext) -> Iterator[AttentionContext]:
    """Declare the layout (and time step) of the attention calls made inside the block."""
    token = _context.set(context)
    try:
        yield context
    finally:
        _context.reset(token)


def current_attention_context() -> AttentionContext | None:
    return _context.get()


def causal_mask(lq: int, lk: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Bool (Lq, Lk) mask where query i sees key j if j <= i + (Lk - Lq)."""
    i = torch.arange(lq, device=device)[:, None]
    j = torch.arange(lk, device=device)[None, :]
    return j <= i + (lk - lq)


def _merged_mask(
    mask: torch.Tensor | None, is_causal: bool, lq: int, lk: int, device: torch.device
) -> torch.Tensor | None:
    """One mask holding both `mask` and causality (bool if `mask` is bool or absent, else additive)."""
    if not is_causal:
        return mask
    causal = causal_mask(lq, lk, device)
    if mask is None:
        return causal
    if mask.dtype == torch.bool:
        return mask & causal
    return mask.masked_fill(~causal, float("-inf"))


def math_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """Reference backend: softmax(q k^T * scale + mask) v, computed in float32."""
    h, hk = q.shape[1], k.shape[1]
    if h != hk:
        k, v = k.repeat_interleave(h // hk, dim=1), v.repeat_interleave(h // hk, dim=1)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale  # (B, H, Lq, Lk)
    mask = _merged_mask(mask, is_causal, q.shape[2], k.shape[2], q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    return torch.matmul(scores.softmax(dim=-1), v.float()).to(q.dtype)


def sdpa_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """torch's scaled_dot_product_attention (flash / memory-efficient / cuDNN kernels where available)."""
    lq, lk = q.shape[2], k.shape[2]
    # SDPA's own is_causal aligns top-left; ours aligns bottom-right, identical only when Lq == Lk.
    fast_causal = is_causal and mask is None and lq == lk
    if not fast_causal:
        mask = _merged_mask(mask, is_causal, lq, lk, q.device)
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.to(q.dtype)
    if mask is not None and mask.ndim < 4:  # torch's SDPA refuses 1-D masks that the contract allows
        mask = mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape))
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, is_causal=fast_causal, scale=scale, enable_gqa=q.shape[1] != k.shape[1]
    )


def current_backend() -> str:
    """The backend a call without an explicit `backend` would use."""
    return _active.get() or DEFAULT_BACKEND


@contextlib.contextmanager
def attention_backend(name: str) -> Iterator[str]:
    """Use backend `name` inside the block, for calls whose module has no backend of its own."""
    get_registry().attention_backends.get(name)  # fail early on a typo
    token = _active.set(name)
    try:
        yield name
    finally:
        _active.reset(token)


def set_attention_backend(module: nn.Module, name: str | None) -> int:
    """Set the backend of every attention layer in `module` (None: back to the context / default).

    An attention layer is any submodule with an ``attention_backend`` attribute that it passes to
    `attention(..., backend=...)`. Returns how many layers were set.
    """
    if name is not None:
        get_registry().attention_backends.get(name)
    count = 0
    for sub in module.modules():
        if hasattr(sub, "attention_backend"):
            setattr(sub, "attention_backend", name)  # noqa: B010 - any module type may hold it
            count += 1
    return count


@contextlib.contextmanager
def exact_attention(module: nn.Module) -> Iterator[None]:
    """Inside the block, every attention layer of `module` runs the default backend, whatever an
    accelerator set; their own backends come back after. For a stage that an attention plan does not
    cover (a pipeline's draft at a smaller size than the plan's)."""
    saved = {m: m.attention_backend for m in module.modules() if hasattr(m, "attention_backend")}
    token = _active.set(None)
    try:
        set_attention_backend(module, None)
        yield
    finally:
        for layer, backend in saved.items():
            setattr(layer, "attention_backend", backend)  # noqa: B010 - any module type may hold it
        _active.reset(token)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """Scaled dot-product attention through the selected backend (see the module doc for shapes)."""
    _check(q, k, v, mask)
    spec = get_registry().attention_backends.get(backend or _active.get() or DEFAULT_BACKEND)
    if spec.supports is not None:
        reason = spec.supports(q, k, v, mask=mask, is_causal=is_causal)
        if reason:
            raise AttentionInputError(f"attention backend '{spec.name}' cannot run this call: {reason}")
    out: torch.Tensor = spec.fn(q, k, v, mask=mask, is_causal=is_causal, scale=scale)
    return out
