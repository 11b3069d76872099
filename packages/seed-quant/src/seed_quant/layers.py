"""Quantized replacements for nn.Linear, nn.Conv2d and nn.Embedding.

Each layer keeps its codes and scales as buffers under stable names (`weight`, `weight_scale`,
`weight_zero`, `smooth`, `bias`), so a quantized state dict is an ordinary safetensors file. Layers are
built either from a float module (`from_float`) or empty on the meta device (`empty`, to load a saved
file); `LAYERS` maps the layer kind recorded in a file to its class.

Codes and scales have fixed dtypes: casting the model (`.to(torch.bfloat16)`) moves them but never
re-encodes them (see `QuantLayer._apply`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from seed_core import lowbit as formats
from seed_core.weights import CASTABLE


class QuantLayer(nn.Module):
    """Base: `kind` is what a file records; `fixed` names the buffers whose dtype never changes."""

    kind: ClassVar[str] = ""
    fixed: ClassVar[tuple[str, ...]] = ("weight", "weight_scale", "weight_zero", "smooth")
    weight: torch.Tensor
    weight_scale: torch.Tensor
    weight_zero: torch.Tensor
    smooth: torch.Tensor | None

    def _apply(self, fn: Any, recurse: bool = True) -> QuantLayer:
        kept = {n: b for n, b in self._buffers.items() if n in self.fixed and b is not None}
        super()._apply(fn, recurse)
        for name, original in kept.items():
            moved = self._buffers[name]
            if moved is not None and moved.dtype != original.dtype:
                self._buffers[name] = original.to(moved.device)  # moved, not re-encoded
        return self


def _meta(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


class _QuantLinear(QuantLayer):
    """Shared by the Linear formats: shapes, bias, flattening to (tokens, in_features)."""

    def __init__(self, in_features: int, out_features: int, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.kind}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = self.matmul(x.reshape(-1, self.in_features))  # (tokens, out), bias included
        return y.reshape(*shape[:-1], self.out_features)

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _biased(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.bias is None else y + self.bias.to(y.dtype)


class Int8Linear(_QuantLinear):
    """Weight-only INT8, one scale per output channel; computes in the activations' dtype."""

    kind = "int8"

    def __init__(self, linear: nn.Linear, codes: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__(linear.in_features, linear.out_features, linear.bias)
        self.register_buffer("weight", codes)  # (out, in) int8
        self.register_buffer("weight_scale", scale)  # (out,) float32

    @classmethod
    def from_float(cls, linear: nn.Linear, **_: Any) -> Int8Linear:
        return cls(linear, *formats.quantize_rows_int8(linear.weight))

    @classmethod
    def empty(cls, linear: nn.Linear, **_: Any) -> Int8Linear:
        n, k = linear.out_features, linear.in_features
        return cls(linear, _meta((n, k), torch.int8), _meta((n,), torch.float32))

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_scale.to(x.dtype)[:, None]
        return self._biased(x @ w.t())


class W8A8Linear(_QuantLinear):
    """INT8 weights (per output channel) times INT8 activations (per token, computed on the fly), INT32
    accumulation (`torch._int_mm`, on CPU and CUDA). With smoothing (SmoothQuant), inputs are multiplied
    by `smooth` first and the weights' columns were divided by it, moving outliers into the weights."""

    kind = "w8a8"

    def __init__(
        self, linear: nn.Linear, codes: torch.Tensor, scale: torch.Tensor, smooth: torch.Tensor | None
    ) -> None:
        super().__init__(linear.in_features, linear.out_features, linear.bias)
        self.register_buffer("weight", codes)  # (out, in) int8
        self.register_buffer("weight_scale", scale)  # (out,) float32
        self.register_buffer("smooth", smooth)  # (in,) float32 or None

    @classmethod
    def from_float(
        cls, linear: nn.Linear, *, act_max: torch.Tensor | None = None, alpha: float = 0.0, **_: Any
    ) -> W8A8Linear:
        w = linear.weight.detach().float()
        smooth = None
        if act_max is not None and alpha > 0:
            # s_j = max|x_j|^α / max|w_j|^(1-α); x_j / s_j and w_j * s_j give the same product
            s = act_max.float().clamp_min(1e-5) ** alpha / w.abs().amax(dim=0).clamp_min(1e-5) ** (1 - alpha)
            s = s.clamp(1e-2, 1e2)
            w, smooth = w * s[None, :], 1.0 / s
        return cls(linear, *formats.quantize_rows_int8(w), smooth)

    @classmethod
    def empty(cls, linear: nn.Linear, *, smooth: bool = False, **_: Any) -> W8A8Linear:
        n, k = linear.out_features, linear.in_features
        return cls(
            linear,
            _meta((n, k), torch.int8),
            _meta((n,), torch.float32),
            _meta((k,), torch.float32) if smooth else None,
        )

    #: "auto": the fused Triton kernels on CUDA (the GEMM autotuned per shape), `torch._int_mm` elsewhere;
    #: "fixed": the same kernels with the GEMM's first launch option (for benchmarks); "torch":
    #: `torch._int_mm` always
    kernel: str = "auto"

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda and self.kernel in ("auto", "fixed"):
            from seed_quant.kernels import INT8_CONFIGS, int8_matmul, quantize_rows

            q, xs = quantize_rows(x, self.smooth)
            block = INT8_CONFIGS[0][:3] if self.kernel == "fixed" else None
            return int8_matmul(q, xs, self.weight, self.weight_scale, self.bias, x.dtype, block=block)
        if self.smooth is not None:
            x = x * self.smooth.to(x.dtype)
        q, xs = formats.quantize_tokens_int8(x)
        rows = q.shape[0]
        if q.is_cuda and rows <= 16:  # cuBLAS int8 GEMMs need more than 16 rows
            q = F.pad(q, (0, 0, 0, 17 - rows))
        acc = torch._int_mm(q, self.weight.t())[:rows]  # (tokens, out) int32
        return self._biased((acc.float() * xs * self.weight_scale[None, :]).to(x.dtype))


class FP8Linear(_QuantLinear):
    """e4m3 weights (per output channel) and e4m3 activations (per token), `torch._scaled_mm` on CUDA
    GPUs of compute capability 8.9+. The float reference below runs elsewhere, for tests only: the
    accelerator refuses devices without FP8 tensor cores."""

    kind = "fp8"

    def __init__(self, linear: nn.Linear, codes: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__(linear.in_features, linear.out_features, linear.bias)
        self.register_buffer("weight", codes)  # (out, in) float8_e4m3fn
        self.register_buffer("weight_scale", scale)  # (out,) float32

    @classmethod
    def from_float(cls, linear: nn.Linear, **_: Any) -> FP8Linear:
        return cls(linear, *formats.quantize_rows_fp8(linear.weight))

    @classmethod
    def empty(cls, linear: nn.Linear, **_: Any) -> FP8Linear:
        n, k = linear.out_features, linear.in_features
        return cls(linear, _meta((n, k), formats.FP8), _meta((n,), torch.float32))

    #: cuBLAS's fast FP8 accumulation (no periodic promotion to float32 along K): quicker on Hopper, a
    #: little less exact; off until a GPU run measures both (`benchmarks/quant.py --gpu-only`, `fp8-fast`)
    fast_accum: bool = False

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda:
            from seed_quant.kernels import quantize_rows

            q, xs = quantize_rows(x, fp8=True)
            # row-wise scales need a bf16 output (and some torch versions refuse a bias with them)
            out = torch._scaled_mm(
                q,
                self.weight.t(),
                scale_a=xs,
                scale_b=self.weight_scale[None, :],
                out_dtype=torch.bfloat16,
                use_fast_accum=self.fast_accum,
            )
            return self._biased(out.to(x.dtype))
        q, xs = formats.quantize_tokens_fp8(x)
        w = self.weight.float() * self.weight_scale[:, None]
        return self._biased(((q.float() * xs) @ w.t()).to(x.dtype))


class Int4Linear(_QuantLinear):
    """Group-wise asymmetric INT4 weights, each group's range clipped where that lowers its error
    (`lowbit.quantize_int4(search=True)`); a fused Triton dequantize-matmul on CUDA, dequantize then
    matmul elsewhere."""

    kind = "int4"

    def __init__(
        self, linear: nn.Linear, packed: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group: int
    ) -> None:
        super().__init__(linear.in_features, linear.out_features, linear.bias)
        self.group = group
        self.register_buffer("weight", packed)  # (out, in/2) uint8
        self.register_buffer("weight_scale", scale)  # (out, groups) float16
        self.register_buffer("weight_zero", zero)  # (out, groups) uint8

    @classmethod
    def from_float(cls, linear: nn.Linear, *, group: int = 64, **_: Any) -> Int4Linear:
        return cls(linear, *formats.quantize_int4(linear.weight, group, search=True), group)

    @classmethod
    def empty(cls, linear: nn.Linear, *, group: int = 64, **_: Any) -> Int4Linear:
        n, k = linear.out_features, linear.in_features
        g = formats.groups_of(k, group)
        return cls(
            linear,
            _meta((n, k // 2), torch.uint8),
            _meta((n, g), torch.float16),
            _meta((n, g), torch.uint8),
            group,
        )

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda:
            from seed_quant.kernels import int4_matmul

            return self._biased(int4_matmul(x, self.weight, self.weight_scale, self.weight_zero, self.group))
        w = formats.dequantize_int4(self.weight, self.weight_scale, self.weight_zero, self.group, x.dtype)
        return self._biased(x @ w.t())


class _QuantConv2d(QuantLayer):
    """Weight-only conv: the (out, in·kh·kw) weight matrix is quantized like a Linear's and rebuilt for
    `F.conv2d` at each call (convolutions here are the VAE's, a small share of the work)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.shape = tuple(conv.weight.shape)
        self.stride, self.padding, self.dilation, self.groups = (
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
        )
        self.bias = (
            None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        )

    def extra_repr(self) -> str:
        return f"{self.shape}, {self.kind}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.dequantize(x.dtype).view(self.shape)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.conv2d(x, w, bias, self.stride, self.padding, self.dilation, self.groups)

    def dequantize(self, dtype: torch.dtype) -> torch.Tensor:
        raise NotImplementedError


class Int8Conv2d(_QuantConv2d):
    kind = "conv-int8"

    def __init__(self, conv: nn.Conv2d, codes: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__(conv)
        self.register_buffer("weight", codes)  # (out, in·kh·kw) int8
        self.register_buffer("weight_scale", scale)  # (out,) float32

    @classmethod
    def from_float(cls, conv: nn.Conv2d, **_: Any) -> Int8Conv2d:
        return cls(conv, *formats.quantize_rows_int8(conv.weight.flatten(1)))

    @classmethod
    def empty(cls, conv: nn.Conv2d, **_: Any) -> Int8Conv2d:
        n, k = conv.weight.shape[0], conv.weight[0].numel()
        return cls(conv, _meta((n, k), torch.int8), _meta((n,), torch.float32))

    def dequantize(self, dtype: torch.dtype) -> torch.Tensor:
        return self.weight.to(dtype) * self.weight_scale.to(dtype)[:, None]


class Int4Conv2d(_QuantConv2d):
    kind = "conv-int4"

    def __init__(
        self, conv: nn.Conv2d, packed: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group: int
    ) -> None:
        super().__init__(conv)
        self.group = group
        self.register_buffer("weight", packed)
        self.register_buffer("weight_scale", scale)
        self.register_buffer("weight_zero", zero)

    @classmethod
    def from_float(cls, conv: nn.Conv2d, *, group: int = 64, **_: Any) -> Int4Conv2d:
        return cls(conv, *formats.quantize_int4(conv.weight.flatten(1), group, search=True), group)

    @classmethod
    def empty(cls, conv: nn.Conv2d, *, group: int = 64, **_: Any) -> Int4Conv2d:
        n, k = conv.weight.shape[0], conv.weight[0].numel()
        g = formats.groups_of(k, group)
        return cls(
            conv,
            _meta((n, k // 2), torch.uint8),
            _meta((n, g), torch.float16),
            _meta((n, g), torch.uint8),
            group,
        )

    def dequantize(self, dtype: torch.dtype) -> torch.Tensor:
        return formats.dequantize_int4(self.weight, self.weight_scale, self.weight_zero, self.group, dtype)


class _QuantEmbedding(QuantLayer):
    """A lookup table quantized row by row (int8) or group-wise along the row (int4): only the looked-up
    rows are dequantized. The output dtype follows casts of the model (`dtype`)."""

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = embedding.weight.shape
        self.dtype = embedding.weight.dtype if embedding.weight.dtype in _FLOATS else torch.float32

    def _apply(self, fn: Any, recurse: bool = True) -> QuantLayer:
        super()._apply(fn, recurse)
        probe = fn(torch.empty((), dtype=self.dtype))
        if probe.dtype in _FLOATS:
            self.dtype = probe.dtype
        return self

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, {self.kind}"


_FLOATS = CASTABLE


class Int8Embedding(_QuantEmbedding):
    kind = "embed-int8"

    def __init__(self, embedding: nn.Embedding, codes: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__(embedding)
        self.register_buffer("weight", codes)  # (rows, dim) int8
        self.register_buffer("weight_scale", scale)  # (rows,) float32

    @classmethod
    def from_float(cls, embedding: nn.Embedding, **_: Any) -> Int8Embedding:
        return cls(embedding, *formats.quantize_rows_int8(embedding.weight))

    @classmethod
    def empty(cls, embedding: nn.Embedding, **_: Any) -> Int8Embedding:
        n, d = embedding.weight.shape
        return cls(embedding, _meta((n, d), torch.int8), _meta((n,), torch.float32))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return (self.weight[ids].float() * self.weight_scale[ids][..., None]).to(self.dtype)


class Int4Embedding(_QuantEmbedding):
    kind = "embed-int4"

    def __init__(
        self,
        embedding: nn.Embedding,
        packed: torch.Tensor,
        scale: torch.Tensor,
        zero: torch.Tensor,
        group: int,
    ) -> None:
        super().__init__(embedding)
        self.group = group
        self.register_buffer("weight", packed)
        self.register_buffer("weight_scale", scale)
        self.register_buffer("weight_zero", zero)

    @classmethod
    def from_float(cls, embedding: nn.Embedding, *, group: int = 64, **_: Any) -> Int4Embedding:
        return cls(embedding, *formats.quantize_int4(embedding.weight, group, search=True), group)

    @classmethod
    def empty(cls, embedding: nn.Embedding, *, group: int = 64, **_: Any) -> Int4Embedding:
        n, d = embedding.weight.shape
        g = formats.groups_of(d, group)
        return cls(
            embedding,
            _meta((n, d // 2), torch.uint8),
            _meta((n, g), torch.float16),
            _meta((n, g), torch.uint8),
            group,
        )

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1)
        rows = formats.dequantize_int4(
            self.weight[flat], self.weight_scale[flat], self.weight_zero[flat], self.group, torch.float32
        )
        return rows.reshape(*ids.shape, self.embedding_dim).to(self.dtype)


#: the layer kind recorded in a quantized file -> its class
LAYERS: dict[str, type[Any]] = {
    cls.kind: cls
    for cls in (
        Int8Linear,
        W8A8Linear,
        FP8Linear,
        Int4Linear,
        Int8Conv2d,
        Int4Conv2d,
        Int8Embedding,
        Int4Embedding,
    )
}
