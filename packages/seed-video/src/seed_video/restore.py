"""SeedVR2's one-step restoration (notes-seedvr2 §3.1) and its colour corrections (§3.4), as tensor
functions; video IO and the `seed restore` command build on these.

One step: the low-quality clip, already resized to the output size, is encoded; the DiT sees
[noise (16) | LQ latent (16) | mask 1 (1)] at t = 1000 and predicts v = noise - x0 (rectified flow), so
x0 = noise - v; the result is decoded and, optionally, its colours are taken from the input.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

_BINOMIAL = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16


def _blur(x: torch.Tensor, dilation: int) -> torch.Tensor:
    """Depthwise 3x3 binomial blur with `dilation`, replicate padding; x (N, C, H, W)."""
    c = x.shape[1]
    kernel = _BINOMIAL.to(x)[None, None].expand(c, 1, 3, 3)
    return F.conv2d(F.pad(x, (dilation,) * 4, mode="replicate"), kernel, dilation=dilation, groups=c)


def wavelet_split(x: torch.Tensor, levels: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """À-trous decomposition: (high = Σ detail levels, low = the last blur); high + low == x."""
    low, high = x, torch.zeros_like(x)
    for i in range(levels):
        blurred = _blur(low, 2**i)
        high = high + (low - blurred)
        low = blurred
    return high, low


def _frames(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B T, C, H, W): colour fixes work per frame."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


def _unframes(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    b, c, t, h, w = like.shape
    return x.view(b, t, c, h, w).transpose(1, 2)


def color_fix_wavelet(sample: torch.Tensor, reference: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """The sample's detail on the reference's low frequencies (colour and tone), per frame, in [-1, 1]."""
    levels = min(levels, max(1, int(min(sample.shape[-2:]) // 8).bit_length()))  # dilation <= size / 8
    high, _ = wavelet_split(_frames(sample.float()), levels)
    _, low = wavelet_split(_frames(reference.float()), levels)
    return _unframes(high + low, sample).clamp(-1, 1).to(sample.dtype)


def color_fix_adain(sample: torch.Tensor, reference: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per frame and channel, the sample's mean and standard deviation mapped to the reference's."""
    s, r = _frames(sample.float()), _frames(reference.float())
    s_mean, r_mean = s.mean(dim=(2, 3), keepdim=True), r.mean(dim=(2, 3), keepdim=True)
    s_std = (s.var(dim=(2, 3), keepdim=True) + eps).sqrt()
    r_std = (r.var(dim=(2, 3), keepdim=True) + eps).sqrt()
    return _unframes((s - s_mean) / s_std * r_std + r_mean, sample).to(sample.dtype)


COLOR_FIXES = {"wavelet": color_fix_wavelet, "adain": color_fix_adain}


def pad_frames(video: torch.Tensor, multiple: int = 4) -> torch.Tensor:
    """(B, C, T, H, W) -> T padded to `multiple`·n + 1 frames by repeating the last frame (the causal VAE's
    frame count); the caller trims the output back to T."""
    t = video.shape[2]
    target = t if (t - 1) % multiple == 0 else t + multiple - (t - 1) % multiple
    if target == t:
        return video
    return torch.cat((video, video[:, :, -1:].expand(-1, -1, target - t, -1, -1)), dim=2)


def restore_clip(
    dit: torch.nn.Module,
    vae: torch.nn.Module,
    video: torch.Tensor,
    text: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    color_fix: str = "wavelet",
    phase: Callable[[str], None] | None = None,
) -> torch.Tensor:
    """One-step restoration of `video` (B, 3, T, H, W) in [-1, 1], already at the output size (a multiple of
    16); `text` (B, L, D) is the shipped positive embedding. Returns (B, 3, T, H, W) in [-1, 1].
    `phase(name)` is called after each phase (encode, dit, decode), e.g. to record peak memory."""
    phase = phase or (lambda name: None)
    if color_fix not in (*COLOR_FIXES, "none"):
        raise ValueError(f"color fix {color_fix!r}: use wavelet, adain or none")
    t = video.shape[2]
    padded = pad_frames(video, getattr(getattr(vae, "cfg", None), "temporal_factor", 4))
    with torch.no_grad():
        lq = vae.encode(padded)  # posterior mean, scaled
        phase("encode")
        noise = torch.randn(lq.shape, generator=generator, dtype=lq.dtype).to(lq.device)
        mask = torch.ones_like(lq[:, :1])
        timestep = torch.full((lq.shape[0],), 1000.0, device=lq.device)
        v = dit(torch.cat((noise, lq, mask), dim=1), text, timestep)
        phase("dit")
        out = vae.decode((noise - v.float()).to(lq.dtype))[:, :, :t]
        phase("decode")
    if color_fix != "none":
        out = COLOR_FIXES[color_fix](out, video)
    return out.clamp(-1, 1)
