"""The causal video VAE: the official key set and shapes, frame arithmetic, causality, per-frame norms."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seed_core.weights import build_on_meta
from seed_vae.video import CausalVideoVAE, VideoVAEConfig, rename_legacy_attention

KEYS = Path(__file__).parent / "data" / "seedvr2_vae_keys.txt"  # notes-seedvr2 appendix B


def _official() -> dict[str, tuple[int, ...]]:
    out = {}
    for line in KEYS.read_text().splitlines():
        key, _, shape = line.partition(" ")
        out[key] = tuple(int(x) for x in shape.strip("[]").split(", "))
    return out


def test_official_key_set_and_shapes() -> None:
    state = build_on_meta(lambda: CausalVideoVAE(VideoVAEConfig.preset("seedvr2"))).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == _official()
    assert sum(v.numel() for v in state.values()) == 250_648_227


def test_legacy_attention_names_load() -> None:
    model = CausalVideoVAE(VideoVAEConfig.preset("tiny"))
    state = model.state_dict()
    legacy = {
        k.replace("to_q.", "query.")
        .replace("to_k.", "key.")
        .replace("to_v.", "value.")
        .replace("to_out.0.", "proj_attn."): v
        for k, v in state.items()
    }
    assert legacy.keys() != state.keys()
    assert rename_legacy_attention(legacy).keys() == state.keys()


@pytest.fixture(scope="module")
def vae() -> CausalVideoVAE:
    torch.manual_seed(0)
    return CausalVideoVAE(VideoVAEConfig.preset("tiny")).eval()


def test_frames_and_sizes(vae: CausalVideoVAE) -> None:
    x = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad():
        z = vae.encode(x)
        assert z.shape == (1, 16, 3, 4, 4)  # 4n + 1 frames -> n + 1, 8x smaller
        assert vae.decode(z).shape == x.shape
        assert vae.encode(x[:, :, :1]).shape == (1, 16, 1, 4, 4)  # an image is one frame
    with pytest.raises(ValueError, match="4n \\+ 1 frames"):
        vae.encode(x[:, :, :6])


def test_encoder_and_decoder_are_causal(vae: CausalVideoVAE) -> None:
    x = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    y = x.clone()
    y[:, :, 5:] += 0.5  # frames 5..8 only reach latent frame 2
    with torch.no_grad():
        a, b = vae.encode(x), vae.encode(y)
        torch.testing.assert_close(a[:, :, :2], b[:, :, :2])
        assert not torch.allclose(a[:, :, 2], b[:, :, 2])
        # the first frame encodes like an image: per-frame norms, nothing from the future
        torch.testing.assert_close(vae.encode(x[:, :, :1]), a[:, :, :1], rtol=1e-4, atol=1e-4)
        c = a.clone()
        c[:, :, 2] += 0.5  # latent frame 2 decodes to frames 5..8
        torch.testing.assert_close(vae.decode(a)[:, :, :5], vae.decode(c)[:, :, :5])


def test_posterior_sample_is_seeded(vae: CausalVideoVAE) -> None:
    x = torch.rand(1, 3, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        s1 = vae.encode(x, sample=True, generator=torch.Generator().manual_seed(1))
        s2 = vae.encode(x, sample=True, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(s1, s2)
    assert not torch.allclose(s1, vae.encode(x))


def test_tiled_video_decode_and_encode(vae: CausalVideoVAE) -> None:
    from seed_vae.video import tiled_decode_video, tiled_encode_video

    z = torch.randn(1, 16, 2, 12, 12)
    with torch.no_grad():
        whole = vae.decode(z)
        torch.testing.assert_close(tiled_decode_video(vae, z, tile=12, overlap=4), whole)  # one tile: exact
        tiled = tiled_decode_video(vae, z, tile=8, overlap=4, margin=2)  # 2 x 2 tiles, blended
        assert tiled.shape == whole.shape == (1, 3, 5, 96, 96) and bool(torch.isfinite(tiled).all())
        assert float((tiled - whole).abs().mean()) < 0.5 * float(whole.abs().mean())
        x = torch.rand(1, 3, 5, 64, 64) * 2 - 1
        assert tiled_encode_video(vae, x, tile=32, overlap=16, margin=8).shape == vae.encode(x).shape


@pytest.mark.parametrize("preset", ["tiny", "mini"])
def test_chunked_encode_and_decode_equal_the_whole_clip(preset: str) -> None:
    """Temporal chunks continue the causal convolutions from the frames kept in between: the same
    latents and frames as processing the whole clip, for every chunk size (4x and 2x temporal VAEs)."""
    torch.manual_seed(0)
    vae = CausalVideoVAE(VideoVAEConfig.preset(preset)).eval()
    f = vae.cfg.temporal_factor
    x = torch.rand(1, 3, 4 * f + 1, 32, 32) * 2 - 1
    with torch.no_grad():
        z = vae.encode(x)
        frames = vae.decode(z)
        assert z.shape[2] == 5 and frames.shape == x.shape
        for chunk in (1, 2, 3):
            torch.testing.assert_close(vae.encode(x, chunk=chunk), z, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(vae.decode(z, chunk=chunk), frames, atol=1e-5, rtol=1e-5)
        # the streaming state is gone afterwards: a plain call is unaffected
        torch.testing.assert_close(vae.encode(x), z)
        from seed_vae.video import tiled_decode_video

        tiled = tiled_decode_video(vae, z, tile=4, overlap=2, margin=1)
        torch.testing.assert_close(
            tiled_decode_video(vae, z, tile=4, overlap=2, margin=1, chunk=2), tiled, atol=1e-5, rtol=1e-5
        )


def test_chunking_is_not_the_same_as_independent_pieces() -> None:
    """The control for the test above: decoding the chunks without the kept frames differs, so the
    equality there comes from the streaming state."""
    torch.manual_seed(0)
    vae = CausalVideoVAE(VideoVAEConfig.preset("mini")).eval()
    z = torch.randn(1, 16, 4, 8, 8)
    with torch.no_grad():
        whole = vae.decode(z)
        pieces = torch.cat([vae.decode(z[:, :, :2]), vae.decode(z[:, :, 2:])], dim=2)
    assert pieces.shape[2] == whole.shape[2] - 1  # each piece drops the doubled first frame
    assert not torch.allclose(pieces[:, :, 3:], whole[:, :, 4:], atol=1e-3)


def test_shortcuts_add_no_weights_and_carry_the_signal_around_each_resampling() -> None:
    """The mini preset's parameter-free shortcuts keep the key set. With its convolutions zeroed, a
    temporal Downsample is a causal 2x2x2 average (frames (0, 0), (1, 2), (3, 4), ...) and an Upsample
    repeats each latent frame and pixel (frame 0 once), so a clip constant over those blocks comes back."""
    from seed_vae.video import Downsample, Upsample

    mini = CausalVideoVAE(VideoVAEConfig.preset("mini")).state_dict()
    plain = CausalVideoVAE(VideoVAEConfig.preset("mini", shortcuts=False)).state_dict()
    assert {k: v.shape for k, v in mini.items()} == {k: v.shape for k, v in plain.items()}
    assert not VideoVAEConfig.preset("seedvr2").shortcuts
    down, up = Downsample(4, temporal=True, shortcut=True), Upsample(4, temporal=True, shortcut=True)
    with torch.no_grad():
        for p in [*down.parameters(), *up.parameters()]:
            p.zero_()
        coarse = torch.randn(1, 4, 3, 3, 3)
        clip = up(coarse)
        assert clip.shape == (1, 4, 5, 6, 6)
        torch.testing.assert_close(clip[:, :, 1:3, ::2, ::2], coarse[:, :, 1:2].expand(-1, -1, 2, -1, -1))
        torch.testing.assert_close(down(clip), coarse)


def test_chunks_hold_the_memory_of_one_chunk() -> None:
    """Chunked encode / decode must hold about one chunk's activations, whatever the clip length: the
    frames a causal convolution keeps between chunks are copies, not views that pin its whole input.
    Counted on fake tensors (shapes only): 17- and 5-frame 128 px clips with the tiny VAE."""
    from seed_core.memory import fake_device, track

    def peaks(
        vae: CausalVideoVAE, chunk: int | None, device: torch.device, frames: int = 17
    ) -> tuple[int, int]:
        x = torch.zeros(1, 3, frames, 128, 128, device=device)
        with track() as t, torch.no_grad():
            t.hold(x)
            z = vae.encode(x, chunk=chunk)
            encode = t.peak
            t.reset()
            del x
            vae.decode(z, chunk=chunk)
            return encode, t.peak

    with fake_device() as device:
        with device:
            vae = CausalVideoVAE(VideoVAEConfig.preset("tiny")).eval()
        whole, chunked = peaks(vae, None, device), peaks(vae, 1, device)
        short = peaks(vae, None, device, 5), peaks(vae, 1, device, 5)
    assert chunked[0] < 0.45 * whole[0]  # 0.38 (0.55 when kept frames were views)
    assert chunked[1] < 0.6 * whole[1]  # 0.48 (0.86 when kept frames were views)
    # 2 latent frames: the last chunk keeps nothing, so streaming costs no more than the whole clip
    assert short[1][0] <= 1.05 * short[0][0] and short[1][1] <= 1.05 * short[0][1]  # 0.93, 1.00 (1.19, 1.53)
