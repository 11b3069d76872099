"""Routing a diffusers transformer's self-attention through seed-core's dispatch.

diffusers computes attention inside its processors (`F.scaled_dot_product_attention` for SD3,
`dispatch_attention_fn` for Flux and Wan). `route(transformer, family)`:

- marks each self-attention module with an `attention_backend` attribute (None), which is what seed-core's
  `set_attention_backend` and seed-attn's `install` look for; None leaves diffusers' own attention running,
  bit for bit;
- gives each such module a processor of a subclass of its own class whose `__call__` (same signature, so
  diffusers passes it the same arguments) makes the processor's attention call go to
  `seed_core.attention.attention(..., backend=module.attention_backend)` when a backend is set;
- hooks the transformer's forward so that every call declares its token layout and flow time
  (`attention_context`), which PARO's plans and calibration read.

The attention function is replaced in the processor's module by a shim that calls the original unless a
routed call is in progress (a context variable), so unrouted modules and other models are untouched.
SD3 orders its joint sequence [image, text]; the shim moves the text first for the backend and back after
(attention is equivariant under a common permutation of queries and keys), so plans see text first.
"""

from __future__ import annotations

import contextvars
import copy
import fnmatch
import inspect
import sys
import types
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seed_core.attention import AttentionContext, attention, attention_context
from seed_core.errors import AttentionInputError
from seed_diffusers.families import Family


@dataclass(frozen=True)
class _Route:
    backend: str
    text_first: bool


_ROUTE: contextvars.ContextVar[_Route | None] = contextvars.ContextVar("seed_diffusers_route", default=None)
_TEXT: contextvars.ContextVar[int] = contextvars.ContextVar("seed_diffusers_text", default=0)
_ENTERED: contextvars.ContextVar[tuple[tuple[Any, Any], ...]] = contextvars.ContextVar(
    "seed_diffusers_layouts", default=()
)


def _seed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, route: _Route, mask: Any,
                    is_causal: bool, scale: float | None) -> torch.Tensor:  # fmt: skip
    """(B, H, L, D) self-attention through the dispatch, text moved first when the model puts it last."""
    text = _TEXT.get()
    if route.text_first or text == 0:
        return attention(q, k, v, mask=mask, is_causal=is_causal, scale=scale, backend=route.backend)
    if mask is not None or is_causal:
        raise AttentionInputError(
            "a masked attention call over an [image, text] sequence cannot be routed; drop the attention "
            "accelerator for this pipeline"
        )
    n = q.shape[2] - text

    def front(x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x[:, :, n:], x[:, :, :n]), dim=2)

    out = attention(front(q), front(k), front(v), scale=scale, backend=route.backend)
    return torch.cat((out[:, :, text:], out[:, :, :text]), dim=2)


def _routable(route: _Route | None, q: torch.Tensor, k: torch.Tensor, dim: int) -> bool:
    # only the self-attention call of a routed module (a Wan I2V image cross-attention inside it is not)
    return route is not None and q.shape[dim] == k.shape[dim]


def _sdpa_shim(original: Any) -> Any:
    def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                     scale=None, **kwargs):  # type: ignore[no-untyped-def]  # fmt: skip
        route = _ROUTE.get()
        if not _routable(route, query, key, 2) or dropout_p or kwargs.get("enable_gqa"):
            return original(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p,
                            is_causal=is_causal, scale=scale, **kwargs)  # fmt: skip
        assert route is not None
        return _seed_attention(query, key, value, route, attn_mask, is_causal, scale)

    scaled_dot_product_attention.seed_original = original  # type: ignore[attr-defined]
    return scaled_dot_product_attention


def _dispatch_shim(original: Any) -> Any:
    def dispatch_attention_fn(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                              scale=None, *args, **kwargs):  # type: ignore[no-untyped-def]  # fmt: skip
        route = _ROUTE.get()
        if not _routable(route, query, key, 1) or dropout_p:
            return original(query, key, value, attn_mask, dropout_p, is_causal, scale, *args, **kwargs)
        assert route is not None
        # diffusers' dispatch takes (B, L, H, D); the contract is (B, H, L, D)
        out = _seed_attention(
            query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), route, attn_mask, is_causal,
            scale,
        )  # fmt: skip
        return out.transpose(1, 2)

    dispatch_attention_fn.seed_original = original  # type: ignore[attr-defined]
    return dispatch_attention_fn


class _Functional(types.ModuleType):
    """torch.nn.functional with scaled_dot_product_attention shimmed (for modules that call `F.sdpa`)."""

    def __init__(self) -> None:
        super().__init__("torch.nn.functional")
        self.scaled_dot_product_attention = _sdpa_shim(F.scaled_dot_product_attention)

    def __getattr__(self, name: str) -> Any:
        return getattr(F, name)


def _patch_module(name: str) -> None:
    """Install the shims in the module that defines a processor class (once)."""
    module = sys.modules[name]
    fn = getattr(module, "dispatch_attention_fn", None)
    if fn is not None and not hasattr(fn, "seed_original"):
        module.dispatch_attention_fn = _dispatch_shim(fn)  # type: ignore[attr-defined]
    if getattr(module, "F", None) is F:
        module.F = _Functional()  # type: ignore[attr-defined]


_ROUTED_CLASSES: dict[type, type] = {}


def _routed_class(cls: type) -> type:
    """A subclass of the processor class whose call routes the module's attention when it has a backend."""
    if cls in _ROUTED_CLASSES or getattr(cls, "seed_routed", False):
        return _ROUTED_CLASSES.get(cls, cls)
    base_call = cls.__call__  # type: ignore[operator]

    def __call__(self, attn, *args, **kwargs):  # type: ignore[no-untyped-def]
        backend = getattr(attn, "attention_backend", None)
        if backend is None:
            return base_call(self, attn, *args, **kwargs)
        token = _ROUTE.set(_Route(backend, getattr(attn, "seed_text_first", True)))
        try:
            return base_call(self, attn, *args, **kwargs)
        finally:
            _ROUTE.reset(token)

    # diffusers filters the keyword arguments it passes by the processor's signature: keep the original's
    __call__.__signature__ = inspect.signature(base_call)  # type: ignore[attr-defined]
    _patch_module(cls.__module__)
    routed = type(cls.__name__, (cls,), {"__call__": __call__, "seed_routed": True})
    _ROUTED_CLASSES[cls] = routed
    return routed


def routed_modules(transformer: nn.Module, family: Family) -> list[tuple[str, nn.Module]]:
    return [
        (name, m)
        for name, m in transformer.named_modules()
        if hasattr(m, "processor") and any(fnmatch.fnmatchcase(name, p) for p in family.routed)
    ]


def route(transformer: nn.Module, family: Family) -> int:
    """Make the self-attention of `transformer` reachable by seed's attention backends (see the module
    doc); returns how many modules were routed."""
    modules = routed_modules(transformer, family)
    for _, module in modules:
        processor = copy.copy(module.processor)
        processor.__class__ = _routed_class(type(module.processor))
        module.processor = processor
        module.attention_backend = None
        module.seed_text_first = family.text_first
    if modules and not getattr(transformer, "seed_layout_hooks", False):
        # hooks, not a wrapped forward: they survive copy.deepcopy (distillation copies the teacher) and
        # stay bound to the copy; the post hook runs even when the forward raises (always_call)
        signature = inspect.signature(type(transformer).forward)

        def enter(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            bound = signature.bind_partial(module, *args, **kwargs).arguments
            layout = family.layout(bound, module.config)
            block = attention_context(AttentionContext(layout.text, (layout.grid,), layout.t))
            block.__enter__()
            # a stack per thread / task (a context variable): calls in other threads never see this one
            _ENTERED.set((*_ENTERED.get(), (block, _TEXT.set(layout.text))))

        def leave(_module: nn.Module, _args: Any, _out: Any) -> None:
            stack = _ENTERED.get()
            if stack:
                block, text = stack[-1]
                _ENTERED.set(stack[:-1])
                _TEXT.reset(text)
                block.__exit__(None, None, None)

        transformer.register_forward_pre_hook(enter, with_kwargs=True)
        transformer.register_forward_hook(leave, always_call=True)
        transformer.seed_layout_hooks = True
    return len(modules)
