"""The one-step restore procedure and the colour fixes (notes-seedvr2 §3.1, §3.4)."""

from __future__ import annotations

import torch

from seed_vae.video import CausalVideoVAE, VideoVAEConfig
from seed_video.config import NaDiTConfig
from seed_video.nadit import NaDiT
from seed_video.restore import color_fix_adain, color_fix_wavelet, pad_frames, restore_clip, wavelet_split


def test_wavelet_split_is_exact_and_the_fix_takes_the_reference_colours() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    high, low = wavelet_split(x)
    torch.testing.assert_close(high + low, x)
    ref = torch.rand(1, 3, 2, 32, 32) * 1.6 - 0.8
    shifted = ref + 0.15  # a colour cast: constant, all low frequency
    fixed = color_fix_wavelet(shifted, ref)
    torch.testing.assert_close(fixed, ref, atol=1e-5, rtol=0)


def test_adain_matches_the_reference_statistics() -> None:
    torch.manual_seed(1)
    sample, ref = torch.randn(1, 3, 2, 16, 16) * 0.2, torch.randn(1, 3, 2, 16, 16) * 0.5 + 0.1
    out = color_fix_adain(sample, ref)
    torch.testing.assert_close(out.mean(dim=(3, 4)), ref.mean(dim=(3, 4)), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dim=(3, 4)), ref.std(dim=(3, 4)), atol=1e-3, rtol=1e-3)


def test_frames_are_padded_to_4n_plus_1_by_repeating_the_last() -> None:
    v = torch.arange(6.0).view(1, 1, 6, 1, 1)
    padded = pad_frames(v)
    assert padded.shape[2] == 9 and padded.flatten().tolist() == [0, 1, 2, 3, 4, 5, 5, 5, 5]
    assert pad_frames(v[:, :, :5]).shape[2] == 5 and pad_frames(v[:, :, :1]).shape[2] == 1


def test_one_step_restore_on_tiny_models() -> None:
    torch.manual_seed(0)
    dit = NaDiT(NaDiTConfig.preset("tiny")).eval()
    vae = CausalVideoVAE(VideoVAEConfig.preset("tiny")).eval()
    video = torch.rand(1, 3, 3, 32, 32) * 2 - 1
    text = torch.randn(1, 4, 48)
    a = restore_clip(dit, vae, video, text, generator=torch.Generator().manual_seed(5))
    b = restore_clip(dit, vae, video, text, generator=torch.Generator().manual_seed(5))
    assert a.shape == video.shape and torch.equal(a, b)  # frames trimmed back; seeded
    plain = restore_clip(dit, vae, video, text, generator=torch.Generator().manual_seed(5), color_fix="none")
    assert not torch.equal(a, plain)
