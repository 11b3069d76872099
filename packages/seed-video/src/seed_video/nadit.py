"""NaDiT, SeedVR2's DiT, with the official 3B / 7B key layout (notes-seedvr2 §1).

(latents (B, 33, T, H, W), text (B, L, 5120), t (B,)) -> velocity (B, 16, T, H, W). Video tokens are
(1, 2, 2) patches; every block attends within windows of the token grid, each window with all text tokens
appended; plain and half-shifted windows alternate; the window size follows the resolution so that a
720p frame always has (4, 3, 3) windows. Attention goes through `seed_core.attention` with each
`WindowAttention`'s `attention_backend`, so attention backends and accelerators apply (not PARO: see
`LAYOUT_BACKENDS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import product

import torch
import torch.nn.functional as F
from torch import nn

from seed_core.attention import attention
from seed_core.errors import AcceleratorError
from seed_video.config import NaDiTConfig

Window = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]  # [start, end) on t, h, w


def float_dtype(module: nn.Module) -> torch.dtype:
    """The dtype inputs are cast to: the first floating parameter's (quantized layers hold integer codes
    in their weights, so a layer's `.weight` cannot say)."""
    return next(p.dtype for p in module.parameters() if p.is_floating_point())


# --- windows ----------------------------------------------------------------------------------------------


def window_size(
    grid: tuple[int, int, int], windows: tuple[int, int, int] = (4, 3, 3)
) -> tuple[int, int, int]:
    """Window extent in tokens for a (T', h, w) grid: the (4, 3, 3) windows of a 45 x 80 (720p) grid, scaled
    to this aspect; at most 30 latent frames count along time."""
    t, h, w = grid
    nt, nh, nw = windows
    scale = math.sqrt(45 * 80 / (h * w))
    rh, rw = round(h * scale), round(w * scale)  # Python's round: half to even, as the official code
    return math.ceil(min(t, 30) / nt), math.ceil(rh / nh), math.ceil(rw / nw)


def axis_windows(d: int, s: int, shifted: bool) -> list[tuple[int, int]]:
    """[start, end) windows of size `s` along an axis of `d` tokens; shifted ones start half a window early
    (edge windows are smaller, empty ones dropped)."""
    if not shifted:
        return [(i * s, min((i + 1) * s, d)) for i in range(math.ceil(d / s))]
    shift = 0.5 if s < d else 0.0
    count = math.ceil((d - shift) / s) + 1 if shift else 1
    spans = [(max(int((i - shift) * s), 0), min(int((i - shift + 1) * s), d)) for i in range(count)]
    return [(a, b) for a, b in spans if b > a]


def partition(grid: tuple[int, int, int], size: tuple[int, int, int], shifted: bool) -> list[Window]:
    axes = [axis_windows(d, s, shifted) for d, s in zip(grid, size, strict=True)]
    return list(product(*axes))


# --- rotary embeddings --------------------------------------------------------------------------------------


class _Freqs(nn.Module):
    def __init__(self, freqs: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("freqs", freqs)  # persistent: it is in the official checkpoints


class Rope(nn.Module):
    """Axial RoPE over (t, h, w), GPT-J pairs (channels 2j, 2j+1), each axis `n` frequencies; the first
    3 * 2n channels of a head rotate. `mmrope3d` (3B): integer positions, text rotated at (i, i, i) and video
    at (L + t, y, x); `pixel` (7B): positions in [-1, 1] across the window, text not rotated."""

    def __init__(self, kind: str, head_dim: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "mmrope3d":
            n = head_dim // 3 // 2  # 21 for 128
            freqs = 10000.0 ** (-2 * torch.arange(n, dtype=torch.float32) / (2 * n))
        else:
            n = head_dim // 2 // 3 // 2  # 10 for 128
            freqs = torch.linspace(1.0, 128.0, n) * math.pi
        self.rope = _Freqs(freqs)

    def angles(
        self, extent: tuple[int, int, int], text: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(video angles (N, 3n), text angles (L, 3n) or None) for a window of `extent` tokens."""
        f = self.rope.freqs.float().to(device)
        if self.kind == "mmrope3d":
            axes = [torch.arange(e, device=device, dtype=torch.float32) for e in extent]
            axes[0] = axes[0] + text
            tpos = torch.arange(text, device=device, dtype=torch.float32)
            txt = torch.cat([tpos[:, None] * f] * 3, dim=1)
        else:
            axes = [torch.linspace(-1.0, 1.0, e, device=device) for e in extent]
            txt = None
        t, y, x = torch.meshgrid(*axes, indexing="ij")
        vid = torch.cat([p.reshape(-1, 1) * f for p in (t, y, x)], dim=1)
        return vid, txt


def rotate(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """x (..., N, D); angles (N, R): channel pairs (2j, 2j+1) for j < R rotate by angles[:, j]."""
    r = angles.shape[-1] * 2
    rot = x[..., :r].float().unflatten(-1, (-1, 2))
    cos, sin = angles.cos(), angles.sin()
    a, b = rot[..., 0], rot[..., 1]
    out = torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)
    return torch.cat((out.to(x.dtype), x[..., r:]), dim=-1)


# --- building blocks ----------------------------------------------------------------------------------


def rms(x: torch.Tensor, eps: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    y = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)
    return (y * weight.float() if weight is not None else y).to(x.dtype)


class Branches(nn.Module):
    """Separate `vid` and `txt` modules (MM blocks) or one `all` for both streams (shared blocks)."""

    def __init__(self, make: Callable[[], nn.Module], shared: bool) -> None:
        super().__init__()
        self.shared = shared
        if shared:
            self.all = make()
        else:
            self.vid, self.txt = make(), make()

    def pick(self, stream: str) -> nn.Module:
        return self.all if self.shared else getattr(self, stream)


class Ada(nn.Module):
    """Learned per-block shift / scale / gate vectors, added to the timestep embedding's ("AdaLN-single").
    Scales carry the 1 themselves (initialised around 1): x * (scale_e + scale)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        for layer in ("attn", "mlp"):
            for kind in ("shift", "scale", "gate"):
                init = torch.ones(dim) if kind == "scale" else torch.zeros(dim)
                setattr(self, f"{layer}_{kind}", nn.Parameter(init))

    def modulate(self, x: torch.Tensor, emb: torch.Tensor, layer: int) -> torch.Tensor:
        """emb (B, D, 2, 3): [:, :, layer] = (shift, scale, gate) of attn (0) or mlp (1)."""
        name = ("attn", "mlp")[layer]
        shift = emb[:, None, :, layer, 0] + getattr(self, f"{name}_shift")
        scale = emb[:, None, :, layer, 1] + getattr(self, f"{name}_scale")
        return x * scale + shift

    def gate(self, x: torch.Tensor, emb: torch.Tensor, layer: int) -> torch.Tensor:
        name = ("attn", "mlp")[layer]
        return x * (emb[:, None, :, layer, 2] + getattr(self, f"{name}_gate"))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.proj_in_gate = nn.Linear(dim, hidden, bias=False)
        self.proj_in = nn.Linear(dim, hidden, bias=False)
        self.proj_out = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_out(F.silu(self.proj_in_gate(x)) * self.proj_in(x))


class GeluMLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.proj_in = nn.Linear(dim, hidden)
        self.proj_out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_out(F.gelu(self.proj_in(x), approximate="tanh"))


# Backends that need one calibrated token layout per layer (seed-attn's PARO and its calibration). NaDiT has
# none to give: each call is a batch of windows, video first and text appended, whose extent changes between
# plain and shifted layers and at the grid's edges; so it declares no `attention_context` and refuses them.
LAYOUT_BACKENDS = ("paro", "paro-calibrate")


class WindowAttention(nn.Module):
    """Joint attention of each window's video tokens with all text tokens; video outputs go back to their
    places, text outputs are averaged over the windows. `attention_backend` (None: the dispatch's choice)
    is this layer's backend, which attention accelerators set (seed_core.attention.set_attention_backend)."""

    _backend: str | None = None

    @property
    def attention_backend(self) -> str | None:
        return self._backend

    @attention_backend.setter
    def attention_backend(self, name: str | None) -> None:
        if name in LAYOUT_BACKENDS:
            raise AcceleratorError(
                f"attention backend '{name}' needs one token layout per layer (a PARO plan), but SeedVR2 "
                "attends within windows whose size varies by layer and position; use --accel flex or "
                "int8-attn"
            )
        self._backend = name

    def __init__(self, cfg: NaDiTConfig, shared: bool) -> None:
        super().__init__()
        d, h, hd = cfg.dim, cfg.heads, cfg.head_dim
        self.heads, self.head_dim, self.eps = h, hd, cfg.norm_eps
        self.proj_qkv = Branches(lambda: nn.Linear(d, 3 * h * hd, bias=False), shared)
        self.proj_out = Branches(lambda: nn.Linear(h * hd, d), shared)
        self.norm_q = Branches(lambda: nn.RMSNorm(hd, eps=cfg.norm_eps), shared)
        self.norm_k = Branches(lambda: nn.RMSNorm(hd, eps=cfg.norm_eps), shared)
        self.rope = Rope(cfg.rope, hd)

    def _qkv(self, x: torch.Tensor, stream: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, _ = x.shape
        qkv = self.proj_qkv.pick(stream)(x).view(b, n, 3, self.heads, self.head_dim)  # "(o h d)"
        q, k, v = qkv.unbind(2)  # each (B, N, H, Dh)
        q, k = self.norm_q.pick(stream)(q), self.norm_k.pick(stream)(k)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, N, Dh)

    def forward(
        self, vid: torch.Tensor, txt: torch.Tensor, grid: tuple[int, int, int], windows: list[Window]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        qv, kv, vv = self._qkv(vid, "vid")
        qt, kt, vt = self._qkv(txt, "txt")
        b, h, _, dh = qv.shape
        lt = txt.shape[1]
        out_v = torch.empty_like(qv)
        out_t = torch.zeros_like(qt, dtype=torch.float32)
        index = torch.arange(grid[0] * grid[1] * grid[2], device=vid.device).view(grid)
        groups: dict[tuple[int, int, int], list[torch.Tensor]] = {}
        for (t0, t1), (h0, h1), (w0, w1) in windows:  # windows of one extent share RoPE: batch them
            groups.setdefault((t1 - t0, h1 - h0, w1 - w0), []).append(index[t0:t1, h0:h1, w0:w1].reshape(-1))
        for extent, members in groups.items():
            idx = torch.stack(members)  # (W, n)
            nw, n = idx.shape
            ang_v, ang_t = self.rope.angles(extent, lt, vid.device)

            def window_view(x: torch.Tensor, idx: torch.Tensor = idx) -> torch.Tensor:
                return x[:, :, idx].permute(0, 2, 1, 3, 4).reshape(b * len(idx), h, idx.shape[1], dh)

            q, k, v = (window_view(x) for x in (qv, kv, vv))
            q, k = rotate(q, ang_v), rotate(k, ang_v)
            tq, tk, tv = (x.repeat_interleave(nw, dim=0) for x in (qt, kt, vt))  # (B W, H, L, Dh)
            if ang_t is not None:
                tq, tk = rotate(tq, ang_t), rotate(tk, ang_t)
            o = attention(
                torch.cat((q, tq), 2),
                torch.cat((k, tk), 2),
                torch.cat((v, tv), 2),
                backend=self.attention_backend,
            )
            o = o.view(b, nw, h, n + lt, dh)
            out_v[:, :, idx] = o[..., :n, :].permute(0, 2, 1, 3, 4)
            out_t += o[..., n:, :].float().sum(1)
        out_t = (out_t / len(windows)).to(qt.dtype)
        merge = lambda o: o.transpose(1, 2).reshape(o.shape[0], o.shape[2], h * dh)  # noqa: E731
        return self.proj_out.pick("vid")(merge(out_v)), self.proj_out.pick("txt")(merge(out_t))


class Block(nn.Module):
    def __init__(self, cfg: NaDiTConfig, index: int) -> None:
        super().__init__()
        shared = index >= cfg.mm_layers
        self.eps, self.shifted = cfg.norm_eps, index % 2 == 1
        self.vid_only = cfg.vid_only_last and index == cfg.layers - 1
        self.attn = WindowAttention(cfg, shared)
        mlp = SwiGLU if cfg.mlp == "swiglu" else GeluMLP
        self.mlp = Branches(lambda: mlp(cfg.dim, cfg.mlp_hidden), shared)
        self.ada = Branches(lambda: Ada(cfg.dim), shared)

    def forward(
        self,
        vid: torch.Tensor,
        txt: torch.Tensor,
        emb: torch.Tensor,
        grid: tuple[int, int, int],
        windows: list[Window],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ada_v, ada_t = self.ada.pick("vid"), self.ada.pick("txt")
        a_v = ada_v.modulate(rms(vid, self.eps), emb, 0)
        a_t = rms(txt, self.eps)
        if not self.vid_only:  # the 3B's last block passes text through unmodulated
            a_t = ada_t.modulate(a_t, emb, 0)
        a_v, a_t = self.attn(a_v, a_t, grid, windows)
        vid = vid + ada_v.gate(a_v, emb, 0)
        txt = txt + (a_t if self.vid_only else ada_t.gate(a_t, emb, 0))
        vid = vid + ada_v.gate(self.mlp.pick("vid")(ada_v.modulate(rms(vid, self.eps), emb, 1)), emb, 1)
        if not self.vid_only:
            txt = txt + ada_t.gate(self.mlp.pick("txt")(ada_t.modulate(rms(txt, self.eps), emb, 1)), emb, 1)
        return vid, txt


class _Proj(nn.Module):
    """A Linear under `.proj` (the official key layout of the patch projections)."""

    def __init__(self, features: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(features, dim)


class _TimeEmbedding(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj_in = nn.Linear(256, dim)
        self.proj_hid = nn.Linear(dim, dim)
        self.proj_out = nn.Linear(dim, 6 * dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        freqs = torch.exp(-math.log(10000.0) * torch.arange(128, device=t.device, dtype=torch.float32) / 128)
        arg = t.float()[:, None] * freqs
        e = torch.cat((arg.sin(), arg.cos()), dim=1).to(float_dtype(self))  # sin first
        return self.proj_out(F.silu(self.proj_hid(F.silu(self.proj_in(e)))))


class _OutAda(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.out_shift = nn.Parameter(torch.zeros(dim))
        self.out_scale = nn.Parameter(torch.ones(dim))


class NaDiT(nn.Module):
    def __init__(self, cfg: NaDiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.vid_in = _Proj(cfg.patch_features, d)
        self.txt_in = nn.Linear(cfg.txt_in_dim, d)
        self.emb_in = _TimeEmbedding(d)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.layers))
        if cfg.out_norm:
            self.vid_out_norm = nn.RMSNorm(d, eps=cfg.norm_eps)
            self.vid_out_ada = _OutAda(d)
        self.vid_out = _Proj(d, cfg.out_channels * math.prod(cfg.patch))

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, T h w, t ph pw C), features ordered (dt, dh, dw, c) as the official code."""
        b, c, t, hh, ww = x.shape
        pt, ph, pw = self.cfg.patch
        x = x.view(b, c, t // pt, pt, hh // ph, ph, ww // pw, pw).permute(0, 2, 4, 6, 3, 5, 7, 1)
        return x.reshape(b, (t // pt) * (hh // ph) * (ww // pw), pt * ph * pw * c)

    def unpatchify(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        b = tokens.shape[0]
        pt, ph, pw = self.cfg.patch
        t, h, w = grid
        c = self.cfg.out_channels
        x = tokens.view(b, t, h, w, pt, ph, pw, c).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.reshape(b, c, t * pt, h * ph, w * pw)

    def forward(self, x: torch.Tensor, text: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x (B, 33, T, H, W): noise, condition latents, mask; text (B, L, txt_in_dim); t (B,), 0 - 1000."""
        cfg = self.cfg
        dtype = float_dtype(self)
        b, _, tt, hh, ww = x.shape
        pt, ph, pw = cfg.patch
        if tt % pt or hh % ph or ww % pw:
            raise ValueError(f"latent size {(tt, hh, ww)} is not a multiple of the patch {cfg.patch}")
        grid = (tt // pt, hh // ph, ww // pw)
        vid = self.vid_in.proj(self.patchify(x.to(dtype)))
        txt = self.txt_in(text.to(dtype))
        emb = self.emb_in(t).view(
            b, cfg.dim, 2, 3
        )  # "b (d l g) -> b d l g": (attn, mlp) x (shift, scale, gate)
        size = window_size(grid, cfg.windows)
        plain, shifted = partition(grid, size, False), partition(grid, size, True)
        for block in self.blocks:
            vid, txt = block(vid, txt, emb, grid, shifted if block.shifted else plain)
        if cfg.out_norm:  # the blocks' attn shift / scale chunks, as the official cache quirk computes
            vid = rms(vid, cfg.norm_eps, self.vid_out_norm.weight)
            vid = vid * (emb[:, None, :, 0, 1] + self.vid_out_ada.out_scale) + (
                emb[:, None, :, 0, 0] + self.vid_out_ada.out_shift
            )
        return self.unpatchify(self.vid_out.proj(vid), grid)
