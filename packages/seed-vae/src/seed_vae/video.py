"""The causal 3D video VAE of SeedVR2 ("s8_c16_t4_inflation_sd3", notes-seedvr2 §2), with the official
key layout: 8x spatial and 4x temporal compression, 16 latent channels.

Every temporal operation is causal: a 3-frame kernel sees the current and two past frames, the first
frame replicated in front of the clip, so frame 0 is encoded like an image and `4n + 1` frames become
`n + 1` latent frames. GroupNorm and the mid-block attention work per frame. The decoder upsamples by
depth-to-space (no interpolation) and drops the second frame after each temporal doubling.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from seed_core.config import Config


@dataclass(frozen=True)
class VideoVAEConfig(Config):
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"channels": (32, 32, 64, 64), "groups": 8},
        # seedvr2-mini: 4x spatial, 2x temporal, trained on the shapes world (seed_mini.train_restore)
        "mini": {
            "channels": (16, 32, 64),
            "layers": 1,
            "groups": 8,
            "temporal_downsamples": 1,
            "shortcuts": True,
        },
        "seedvr2": {},
    }

    image_channels: int = 3
    latent_channels: int = 16
    channels: tuple[int, ...] = (128, 256, 512, 512)
    layers: int = 2  # resnets per encoder block (the decoder has one more)
    groups: int = 32
    temporal_downsamples: int = 2  # encoder blocks 1 .. n halve time too; decoder blocks 0 .. n-1 double it
    scaling_factor: float = 0.9152
    shift_factor: float = 0.0
    # parameter-free DC-AE-style residual paths around every resampling and the bottleneck (average
    # pooling down, nearest repetition up): no keys change, and a small VAE trains several times faster
    # from scratch. The official model has none; seedvr2-mini uses them.
    shortcuts: bool = False

    @property
    def factor(self) -> int:
        return 2 ** (len(self.channels) - 1)

    @property
    def temporal_factor(self) -> int:
        return 2**self.temporal_downsamples


def _per_frame(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """GroupNorm over (c, h, w) of each frame: statistics never mix frames."""
    b, c, t, h, w = x.shape
    y = norm(x.transpose(1, 2).reshape(b * t, c, h, w))
    return y.view(b, t, c, h, w).transpose(1, 2)


class _Streamable:
    """A module that can continue one clip across calls (see `streaming`): `started` once it has seen
    the clip's first chunk, `final` during its last (nothing to keep for a next one)."""

    streaming = False
    started = False
    final = False

    def stream(self, on: bool) -> None:
        self.streaming, self.started, self.final = on, False, False


class CausalConv3d(nn.Conv3d, _Streamable):
    """Conv3d whose temporal padding is the first frame repeated in front (none at the end); spatial
    padding as usual (`pad=False`: none, for the padded stride-2 downsamplers).

    Streaming (`streaming(module)`): each call gets the next frames of the same clip; the frames that the
    next window still needs are kept and put in front of the next call's input instead of the padding,
    so a clip processed chunk by chunk gives the same output as the whole clip at once."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: tuple[int, int, int],
        stride: tuple[int, int, int] = (1, 1, 1),
        pad: bool = True,
    ) -> None:
        kt, kh, kw = kernel
        super().__init__(cin, cout, kernel, stride, padding=(0, kh // 2, kw // 2) if pad else 0)
        self.front = kt - 1  # frames of history a kernel needs
        self.history: torch.Tensor | None = None

    def stream(self, on: bool) -> None:
        super().stream(on)
        self.history = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if self.front:
            if self.history is not None:
                x = torch.cat((self.history, x), dim=2)
            else:
                x = torch.cat((x[:, :, :1].expand(-1, -1, self.front, -1, -1), x), dim=2)
            if self.streaming:  # keep the frames from the first window start this call does not reach
                windows = (x.shape[2] - self.kernel_size[0]) // self.stride[0] + 1
                # a copy: a view would keep all of this call's input alive until the next call
                self.history = None if self.final else x[:, :, windows * self.stride[0] :].clone()
        return super().forward(x)


class Resnet(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-6)
        self.conv1 = CausalConv3d(cin, cout, (3, 3, 3))
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-6)
        self.conv2 = CausalConv3d(cout, cout, (3, 3, 3))
        self.conv_shortcut = nn.Conv3d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(_per_frame(self.norm1, x)))
        h = self.conv2(F.silu(_per_frame(self.norm2, h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class FrameAttention(nn.Module):
    """One-head self-attention over the h·w positions of each frame (diffusers' `Attention` key names)."""

    def __init__(self, dim: int, groups: int) -> None:
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.to_q, self.to_k, self.to_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = _per_frame(self.group_norm, x).permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c)
        q, k, v = (f(y)[:, None] for f in (self.to_q, self.to_k, self.to_v))  # (B T, 1, hw, c)
        o = F.scaled_dot_product_attention(q, k, v)[:, 0]
        o = self.to_out[0](o).view(b, t, h, w, c).permute(0, 4, 1, 2, 3)
        return x + o


class Downsample(nn.Module, _Streamable):
    def __init__(self, dim: int, temporal: bool, shortcut: bool = False) -> None:
        super().__init__()
        kernel, stride = ((3, 3, 3), (2, 2, 2)) if temporal else ((1, 3, 3), (1, 2, 2))
        self.conv = CausalConv3d(dim, dim, kernel, stride, pad=False)
        self.temporal, self.shortcut = temporal, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(F.pad(x, (0, 1, 0, 1)))  # zero pad right and bottom, then stride 2
        if self.shortcut:  # average of each 2x2 (x 2 frames: (0, 0), (1, 2), (3, 4), ...) block
            if self.temporal and not self.started:
                x = torch.cat((x[:, :, :1], x), dim=2)
            # pooled in float32: avg_pool3d has no bfloat16 / float16 kernel on the CPU
            out = out + F.avg_pool3d(x.float(), (2 if self.temporal else 1, 2, 2)).to(out.dtype)
        self.started = self.streaming
        return out


class Upsample(nn.Module, _Streamable):
    """1x1x1 conv to C·r channels, depth-to-space with channels laid out (x y z c) for (h, w, t) factors,
    the second frame dropped after a temporal doubling (T -> 2T - 1), then a causal 3x3x3 conv."""

    def __init__(self, dim: int, temporal: bool, shortcut: bool = False) -> None:
        super().__init__()
        self.t, self.shortcut = (2 if temporal else 1), shortcut
        self.upscale_conv = nn.Conv3d(dim, dim * 4 * self.t, 1)
        self.conv = CausalConv3d(dim, dim, (3, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = self.upscale_conv(x).view(b, 2, 2, self.t, c, t, h, w)  # (x y z c)
        y = y.permute(0, 4, 5, 3, 6, 1, 7, 2).reshape(b, c, t * self.t, h * 2, w * 2)
        first = self.t == 2 and not self.started  # drop the doubled first frame
        self.started = self.streaming
        if first:
            y = torch.cat((y[:, :, :1], y[:, :, 2:]), dim=2)
        out = self.conv(y)
        if self.shortcut:  # plus the input repeated to the output's frames and pixels
            x = x.repeat_interleave(self.t, dim=2)[:, :, 1:] if first else x.repeat_interleave(self.t, dim=2)
            out = out + x.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)
        return out


@contextmanager
def streaming(module: nn.Module) -> Iterator[Callable[[], None]]:
    """Within the block, calls of `module` (an encoder or decoder) continue one clip chunk by chunk.
    Call what it yields before the last chunk: the convolutions then let go of the frames they kept as
    soon as they have used them (streaming holds every convolution's kept frames at once, which for a
    short clip can cost more than the whole clip in one call)."""
    parts = [m for m in module.modules() if isinstance(m, _Streamable)]
    for m in parts:
        m.stream(True)

    def last() -> None:
        for m in parts:
            m.final = True

    try:
        yield last
    finally:
        for m in parts:
            m.stream(False)


def _chunks(module: nn.Module, pieces: list[torch.Tensor]) -> torch.Tensor:
    """`module` over consecutive `pieces` of one clip along time, streamed: the output of the whole."""
    outs = []
    with streaming(module) as last:
        for i, piece in enumerate(pieces):
            if i == len(pieces) - 1:
                last()
            outs.append(module(piece))
    return torch.cat(outs, dim=2)


class _Block(nn.Module):
    def __init__(self, resnets: list[Resnet], resample: nn.Module | None, kind: str) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        if resample is not None:
            setattr(self, kind, nn.ModuleList([resample]))
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for r in self.resnets:
            x = r(x)
        for s in getattr(self, self.kind, ()):
            x = s(x)
        return x


class _Mid(nn.Module):
    def __init__(self, dim: int, groups: int) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([Resnet(dim, dim, groups), Resnet(dim, dim, groups)])
        self.attentions = nn.ModuleList([FrameAttention(dim, groups)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class VideoEncoder(nn.Module):
    def __init__(self, cfg: VideoVAEConfig) -> None:
        super().__init__()
        ch, g = cfg.channels, cfg.groups
        self.conv_in = CausalConv3d(cfg.image_channels, ch[0], (3, 3, 3))
        blocks, cin = [], ch[0]
        for i, cout in enumerate(ch):
            resnets = [Resnet(cin if j == 0 else cout, cout, g) for j in range(cfg.layers)]
            last = i == len(ch) - 1
            temporal = 1 <= i <= cfg.temporal_downsamples
            down = None if last else Downsample(cout, temporal, cfg.shortcuts)
            blocks.append(_Block(resnets, down, "downsamplers"))
            cin = cout
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = _Mid(ch[-1], g)
        self.conv_norm_out = nn.GroupNorm(g, ch[-1], eps=1e-6)
        self.conv_out = CausalConv3d(ch[-1], 2 * cfg.latent_channels, (3, 3, 3))
        self.shortcut = cfg.shortcuts and ch[-1] % (2 * cfg.latent_channels) == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        out = self.conv_out(F.silu(_per_frame(self.conv_norm_out, x)))
        if self.shortcut:  # the moments are a residual over an average of groups of the deepest features
            b, c, t, h, w = x.shape
            out = out + x.view(b, out.shape[1], c // out.shape[1], t, h, w).mean(dim=2)
        return out


class VideoDecoder(nn.Module):
    def __init__(self, cfg: VideoVAEConfig) -> None:
        super().__init__()
        ch, g = list(reversed(cfg.channels)), cfg.groups
        self.conv_in = CausalConv3d(cfg.latent_channels, ch[0], (3, 3, 3))
        self.mid_block = _Mid(ch[0], g)
        blocks, cin = [], ch[0]
        for i, cout in enumerate(ch):
            resnets = [Resnet(cin if j == 0 else cout, cout, g) for j in range(cfg.layers + 1)]
            last = i == len(ch) - 1
            up = None if last else Upsample(cout, i < cfg.temporal_downsamples, cfg.shortcuts)
            blocks.append(_Block(resnets, up, "upsamplers"))
            cin = cout
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_norm_out = nn.GroupNorm(g, ch[-1], eps=1e-6)
        self.conv_out = CausalConv3d(ch[-1], cfg.image_channels, (3, 3, 3))
        self.shortcut = cfg.shortcuts and ch[0] % cfg.latent_channels == 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(z)
        if self.shortcut:  # the first features are a residual over the latent, repeated
            x = x + z.repeat_interleave(x.shape[1] // z.shape[1], dim=1)
        x = self.mid_block(x)
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(_per_frame(self.conv_norm_out, x)))


class CausalVideoVAE(nn.Module):
    """(B, 3, 4n+1, H, W) in [-1, 1] <-> (B, 16, n+1, H/8, W/8) model latents (scaled by 0.9152)."""

    def __init__(self, cfg: VideoVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = VideoEncoder(cfg)
        self.decoder = VideoDecoder(cfg)

    def encode(
        self,
        x: torch.Tensor,
        *,
        sample: bool = False,
        generator: torch.Generator | None = None,
        chunk: int | None = None,
    ) -> torch.Tensor:
        """`chunk`: encode `chunk` latent frames at a time (time is causal, so the result is the same and
        the activations held are those of one chunk)."""
        t, f = x.shape[2], self.cfg.temporal_factor
        if (t - 1) % f:
            raise ValueError(
                f"{t} frames: the causal VAE takes {f}n + 1 frames (1, {f + 1}, {2 * f + 1}, ...)"
            )
        if chunk is None or chunk >= (t - 1) // f + 1:
            h = self.encoder(x)
        else:  # pixel frames [0, 1 + f (chunk - 1)), then f chunk at a time
            bounds = [0, *range(1 + f * (chunk - 1), t, f * chunk), t]
            h = _chunks(self.encoder, [x[:, :, a:b] for a, b in pairwise(bounds)])
        mean, logvar = h.chunk(2, dim=1)
        z = mean
        if sample:
            noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
            z = mean + torch.exp(0.5 * logvar.clamp(-30.0, 20.0)) * noise
        return (z - self.cfg.shift_factor) * self.cfg.scaling_factor

    def decode(self, z: torch.Tensor, *, chunk: int | None = None) -> torch.Tensor:
        """`chunk`: decode `chunk` latent frames at a time (same result, less memory)."""
        z = z / self.cfg.scaling_factor + self.cfg.shift_factor
        if chunk is None or chunk >= z.shape[2]:
            return self.decoder(z)
        return _chunks(self.decoder, list(z.split(chunk, dim=2)))


LEGACY_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def rename_legacy_attention(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Older diffusers names of the mid-block attention (`query`, `key`, `value`, `proj_attn`) -> the
    names this module uses (`to_q`, `to_k`, `to_v`, `to_out.0`); other keys pass unchanged. Checkpoints of
    SeedVR2's VAE exist with either naming."""
    out = {}
    for key, value in state.items():
        prefix, _, rest = key.rpartition(".attentions.0.")
        if prefix:
            name, _, param = rest.partition(".")
            key = f"{prefix}.attentions.0.{LEGACY_ATTENTION.get(name, name)}.{param}"
        out[key] = value
    return out


def tiled_decode_video(
    vae: CausalVideoVAE,
    latents: torch.Tensor,
    *,
    tile: int = 64,
    overlap: int = 16,
    margin: int = 8,
    chunk: int | None = None,
) -> torch.Tensor:
    """`vae.decode` in spatial tiles of `tile` latent pixels (overlap and margin also in latent pixels),
    blended with linear ramps; each tile's frames at once, or `chunk` latent frames at a time (exact:
    time is causal). The mid-block attention sees one tile at a time, so tiling is close to, not equal
    to, a whole decode (ComfyUI's default is 1024 px tiles with 128 px overlap, 128 / 16 latents)."""
    from fractions import Fraction

    from seed_vae.tiling import tiled_apply

    return tiled_apply(
        lambda z: vae.decode(z, chunk=chunk),
        latents,
        scale=Fraction(vae.cfg.factor),
        tile=tile,
        overlap=overlap,
        margin=margin,
    )


def tiled_encode_video(
    vae: CausalVideoVAE,
    video: torch.Tensor,
    *,
    tile: int = 512,
    overlap: int = 128,
    margin: int = 64,
    chunk: int | None = None,
) -> torch.Tensor:
    """`vae.encode` (posterior mean) in spatial tiles of `tile` pixels (multiples of the VAE factor),
    `chunk` latent frames at a time if given."""
    from fractions import Fraction

    from seed_vae.tiling import tiled_apply

    f = vae.cfg.factor
    return tiled_apply(
        lambda x: vae.encode(x, chunk=chunk),
        video,
        scale=Fraction(1, f),
        tile=tile,
        overlap=overlap,
        margin=margin,
        align=f,
    )
