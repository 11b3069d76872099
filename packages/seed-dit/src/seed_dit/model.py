"""Seedream-style MMDiT, read top to bottom: embeddings, attention, dual-stream block, single-stream block,
the model.

Where the Seedream papers are silent, this follows the best open MMDiTs (SD3 / Flux): adaLN-Zero
modulation from a conditioning vector, RMS qk-norm, GELU-tanh MLPs, dual-stream blocks first, then
single-stream blocks with the attention and MLP in parallel. Attention goes through
`seed_core.attention.attention`, so any registered backend (sparse, quantized, ...) runs under it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seed_core.attention import AttentionContext, attention, attention_context
from seed_dit.config import MMDiTConfig
from seed_dit.rope import apply_rope, image_positions, rope_frequencies, text_positions


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) in [0, 1] -> (B, dim) sinusoidal features of 1000 t."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat((args.cos(), args.sin()), dim=-1)


class MLPEmbedder(nn.Module):
    def __init__(self, dim_in: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim_in, hidden), nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(x)))


class Modulation(nn.Module):
    """vec (B, hidden) -> `n` chunks of (B, 1, hidden): shift / scale / gate triples (adaLN-Zero)."""

    def __init__(self, hidden: int, n: int) -> None:
        super().__init__()
        self.n = n
        self.lin = nn.Linear(hidden, n * hidden)

    def forward(self, vec: torch.Tensor) -> list[torch.Tensor]:
        return list(self.lin(F.silu(vec))[:, None, :].chunk(self.n, dim=-1))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class QKNorm(nn.Module):
    def __init__(self, head_dim: int, enabled: bool) -> None:
        super().__init__()
        self.q = nn.RMSNorm(head_dim, eps=1e-6) if enabled else nn.Identity()
        self.k = nn.RMSNorm(head_dim, eps=1e-6) if enabled else nn.Identity()


class JointAttention(nn.Module):
    """RoPE + qk-norm + attention through the dispatch; holds the per-layer backend setting."""

    def __init__(self, cfg: MMDiTConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.attention_backend: str | None = None

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        angles: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        # q, k, v: (B, H, L, Dh); angles (B, L, Dh / 2); mask (B, 1, 1, L) bool keys
        q, k = apply_rope(q, angles), apply_rope(k, angles)
        out = attention(q, k, v, mask=mask, backend=self.attention_backend)
        return out.transpose(1, 2).flatten(2)  # (B, L, H * Dh)


def _split_heads(qkv: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    b, n, _ = qkv.shape
    q, k, v = qkv.view(b, n, 3, heads, -1).permute(2, 0, 3, 1, 4)  # each (B, H, L, Dh)
    return q, k, v


class StreamWeights(nn.Module):
    """One modality's weights inside a dual-stream block."""

    def __init__(self, cfg: MMDiTConfig) -> None:
        super().__init__()
        h = cfg.hidden
        self.mod = Modulation(h, 6)
        self.norm1 = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(h, 3 * h)
        self.qk_norm = QKNorm(cfg.head_dim, cfg.qk_norm)
        self.proj = nn.Linear(h, h)
        self.norm2 = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(h, int(h * cfg.mlp_ratio)),
            nn.GELU(approximate="tanh"),
            nn.Linear(int(h * cfg.mlp_ratio), h),
        )


class DoubleStreamBlock(nn.Module):
    """Text and image keep separate weights; they meet in one joint attention."""

    def __init__(self, cfg: MMDiTConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.img, self.txt = StreamWeights(cfg), StreamWeights(cfg)
        self.attn = JointAttention(cfg)

    def forward(
        self,
        img: torch.Tensor,
        txt: torch.Tensor,
        vec: torch.Tensor,
        angles: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # txt (B, Lt, h) comes first in the joint sequence, then img (B, Li, h)
        qkvs, mods = [], []
        for x, s in ((txt, self.txt), (img, self.img)):
            m = s.mod(vec)
            q, k, v = _split_heads(s.qkv(modulate(s.norm1(x), m[0], m[1])), self.heads)
            qkvs.append((s.qk_norm.q(q), s.qk_norm.k(k), v))
            mods.append(m)
        q, k, v = (torch.cat(parts, dim=2) for parts in zip(*qkvs, strict=True))
        out = self.attn(q, k, v, angles, mask)
        lt = txt.shape[1]
        results = []
        for x, s, m, o in ((txt, self.txt, mods[0], out[:, :lt]), (img, self.img, mods[1], out[:, lt:])):
            x = x + m[2] * s.proj(o)
            x = x + m[5] * s.mlp(modulate(s.norm2(x), m[3], m[4]))
            results.append(x)
        return results[1], results[0]


class SingleStreamBlock(nn.Module):
    """One set of weights over the joined sequence; attention and MLP in parallel (Flux style)."""

    def __init__(self, cfg: MMDiTConfig) -> None:
        super().__init__()
        h, self.heads = cfg.hidden, cfg.heads
        self.mlp_hidden = int(h * cfg.mlp_ratio)
        self.mod = Modulation(h, 3)
        self.norm = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.linear1 = nn.Linear(h, 3 * h + self.mlp_hidden)
        self.linear2 = nn.Linear(h + self.mlp_hidden, h)
        self.qk_norm = QKNorm(cfg.head_dim, cfg.qk_norm)
        self.attn = JointAttention(cfg)

    def forward(
        self, x: torch.Tensor, vec: torch.Tensor, angles: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        shift, scale, gate = self.mod(vec)
        qkv, mlp = self.linear1(modulate(self.norm(x), shift, scale)).split(
            [3 * x.shape[-1], self.mlp_hidden], dim=-1
        )
        q, k, v = _split_heads(qkv, self.heads)
        out = self.attn(self.qk_norm.q(q), self.qk_norm.k(k), v, angles, mask)
        return x + gate * self.linear2(torch.cat((out, F.gelu(mlp, approximate="tanh")), dim=-1))


@dataclass
class Conditioning:
    """What the DiT is conditioned on, batched. `references[i]` is (B, C, h_i, w_i) latents."""

    text: torch.Tensor  # (B, Lt, text_dim)
    text_mask: torch.Tensor  # (B, Lt) bool, True = real token
    pooled: torch.Tensor  # (B, pooled_dim)
    task: torch.Tensor  # (B,) long: 0 generate, 1 edit, 2 compose
    source: torch.Tensor | None = None  # (B,) long meta-info label, default 0
    references: tuple[torch.Tensor, ...] = ()
    guidance: torch.Tensor | None = None  # (B,) guidance scale, for guidance-embedded students
    # RoPE position interpolation: image rows / columns (and the text start) are multiplied by this, so a
    # large grid spans the positions of the small one the model knows best (the refine of a draft)
    position_scale: float = 1.0


FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class MMDiT(nn.Module):
    """(latents (B, C, H, W), t (B,), Conditioning) -> velocity (B, C, H, W)."""

    def __init__(self, cfg: MMDiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h, p = cfg.hidden, cfg.patch_size
        self.img_in = nn.Linear(cfg.in_channels * p * p, h)
        self.txt_in = nn.Linear(cfg.text_dim, h)
        self.time_in = MLPEmbedder(256, h)
        self.pooled_in = MLPEmbedder(cfg.pooled_dim, h)
        self.guidance_in = MLPEmbedder(256, h) if cfg.guidance_embed else None
        self.task_embed = nn.Embedding(cfg.num_tasks, h)
        self.source_embed = nn.Embedding(cfg.num_sources, h)
        # role of each image token: 0 = the image being generated, i = reference i
        self.role_embed = nn.Embedding(cfg.max_references + 1, h)
        self.dual_blocks = nn.ModuleList(DoubleStreamBlock(cfg) for _ in range(cfg.double_blocks))
        self.single_blocks = nn.ModuleList(SingleStreamBlock(cfg) for _ in range(cfg.single_blocks))
        self.final_mod = Modulation(h, 2)
        self.final_norm = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.final = nn.Linear(h, cfg.in_channels * p * p)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier linears; zero modulations and output, so every block starts as the identity (adaLN-Zero)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
        for m in self.modules():
            if isinstance(m, Modulation):
                nn.init.zeros_(m.lin.weight)
        nn.init.zeros_(self.final.weight)

    # --- tokens ------------------------------------------------------------------------------------

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, H/p * W/p, C p p)."""
        b, c, hh, ww = x.shape
        p = self.cfg.patch_size
        if hh % p or ww % p:
            raise ValueError(f"latent size {(hh, ww)} is not a multiple of the patch size {p}")
        x = x.view(b, c, hh // p, p, ww // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, (hh // p) * (ww // p), c * p * p)

    def unpatchify(self, tokens: torch.Tensor, hh: int, ww: int) -> torch.Tensor:
        """(B, H/p * W/p, C p p) -> (B, C, H, W)."""
        b, p, c = tokens.shape[0], self.cfg.patch_size, self.cfg.in_channels
        x = tokens.view(b, hh // p, ww // p, c, p, p).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(b, c, hh, ww)

    @property
    def compute_dtype(self) -> torch.dtype:
        """Inputs follow the weights (float32, bfloat16, ...); quantized layers hold integer codes, so
        the first floating parameter decides."""
        return next(p.dtype for p in self.parameters() if p.dtype in FLOATS)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning, return_hidden: int | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Velocity for latents `x` at times `t`. With `return_hidden=k`, also the image-token hidden
        states after block k (counting double then single blocks), for representation alignment."""
        cfg, p = self.cfg, self.cfg.patch_size
        dtype = self.compute_dtype
        x = x.to(dtype)
        b, _, hh, ww = x.shape
        if len(cond.references) > cfg.max_references:
            raise ValueError(
                f"{len(cond.references)} references given; this model takes at most {cfg.max_references}"
            )
        grids = [(hh // p, ww // p)] + [(r.shape[-2] // p, r.shape[-1] // p) for r in cond.references]
        img = torch.cat([self.patchify(x)] + [self.patchify(r.to(dtype)) for r in cond.references], dim=1)
        img = self.img_in(img)
        roles = torch.cat([torch.full((gh * gw,), i, device=x.device) for i, (gh, gw) in enumerate(grids)])
        img = img + self.role_embed(roles)[None]
        txt = self.txt_in(cond.text.to(dtype))

        device = x.device
        pos_img = torch.cat([image_positions(gh, gw, i, device) for i, (gh, gw) in enumerate(grids)])
        start = max(max(g) for g in grids)
        if cond.position_scale != 1.0:
            pos_img = pos_img.double()
            pos_img[:, 1:] *= cond.position_scale
            start = max(1, round(start * cond.position_scale))
        pos = torch.cat(
            (text_positions(txt.shape[1], start, device).to(pos_img.dtype), pos_img)
        )  # text first
        angles = rope_frequencies(pos[None].expand(b, -1, -1), cfg.rope_axes, cfg.rope_theta)
        n_img = img.shape[1]
        keep = torch.cat(
            (cond.text_mask.bool(), torch.ones(b, n_img, dtype=torch.bool, device=device)), dim=1
        )
        # (B, 1, 1, L) key padding, dropped when there is none (faster kernels). Asking is a device sync,
        # so a training step on an accelerator keeps the mask: its host must run ahead of the device
        ask = keep.device.type == "cpu" or not torch.is_grad_enabled()
        mask = None if ask and bool(keep.all()) else keep[:, None, None, :]

        vec = self.time_in(timestep_embedding(t, 256).to(dtype)) + self.pooled_in(cond.pooled.to(dtype))
        vec = vec + self.task_embed(cond.task)
        source = cond.source if cond.source is not None else torch.zeros_like(cond.task)
        vec = vec + self.source_embed(source)
        if self.guidance_in is not None:
            g = cond.guidance if cond.guidance is not None else torch.ones_like(t)
            vec = vec + self.guidance_in(timestep_embedding(g / 1000.0, 256).to(dtype))  # embeds g itself

        context = AttentionContext(txt.shape[1], tuple(grids), t)  # for layout-aware attention (PARO)
        with attention_context(context):
            img, hidden = self._blocks(img, txt, vec, angles, mask, return_hidden)
        img = img[:, : grids[0][0] * grids[0][1]]  # only the generated image's tokens
        shift, scale = self.final_mod(vec)
        out = self.unpatchify(self.final(modulate(self.final_norm(img), shift, scale)), hh, ww)
        if return_hidden is not None:
            if hidden is None:
                depth = len(self.dual_blocks) + len(self.single_blocks)
                raise ValueError(f"return_hidden={return_hidden} but the model has {depth} blocks")
            return out, hidden[:, : grids[0][0] * grids[0][1]]
        return out

    def _blocks(
        self,
        img: torch.Tensor,
        txt: torch.Tensor,
        vec: torch.Tensor,
        angles: torch.Tensor,
        mask: torch.Tensor | None,
        return_hidden: int | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Dual then single blocks; returns the image tokens (with references) and the requested hidden."""
        hidden = None
        depth = 0
        for block in self.dual_blocks:
            img, txt = block(img, txt, vec, angles, mask)
            depth += 1
            if return_hidden == depth:
                hidden = img
        seq = torch.cat((txt, img), dim=1)
        lt = txt.shape[1]
        for single in self.single_blocks:
            seq = single(seq, vec, angles, mask)
            depth += 1
            if return_hidden == depth:
                hidden = seq[:, lt:]
        return seq[:, lt:], hidden
