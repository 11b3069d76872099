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
