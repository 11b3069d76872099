from __future__ import annotations

import pytest
import torch

from seed_core.weights import build_on_meta, count_parameters
from seed_vae import Autoencoder, AutoencoderConfig
from seed_vae.loss import AutoencoderLoss
from seed_vae.model import channel_to_space, space_to_channel
from seed_vae.synthetic import fit_on_discs, held_out_psnr, random_discs
from seed_vae.tiling import tiled_decode, tiled_encode


@pytest.mark.parametrize("preset", ["tiny-f8", "tiny-f32"])
@pytest.mark.parametrize("kl", [True, False])
def test_shapes_and_backward(preset, kl):
    torch.manual_seed(0)
    vae = Autoencoder(AutoencoderConfig.preset(preset, kl=kl))
    f, c = vae.cfg.factor, vae.cfg.latent_channels
    x = torch.rand(2, 3, 64, 96) * 2 - 1
    z = vae.encode(x)
    assert z.shape == (2, c, 64 // f, 96 // f)
    assert vae.decode(z).shape == x.shape
    recon, dist = vae(x)
    terms = AutoencoderLoss()(recon, x, dist)
    terms.total.backward()
    assert all(p.grad is not None for p in vae.parameters())
    assert (terms.kl.item() > 0) == kl


def test_scaling_and_shift_factors():
    torch.manual_seed(0)
    plain = Autoencoder(AutoencoderConfig.preset("tiny-f8"))
    scaled = Autoencoder(AutoencoderConfig.preset("tiny-f8", scaling_factor=0.5, shift_factor=0.1))
    scaled.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(scaled.encode(x), (plain.encode(x) - 0.1) * 0.5)
    torch.testing.assert_close(
        scaled.decode(scaled.encode(x)), plain.decode(plain.encode(x)), atol=1e-5, rtol=1e-5
    )


def test_bad_sizes_and_configs():
    vae = Autoencoder(AutoencoderConfig.preset("tiny-f8"))
    with pytest.raises(ValueError, match="not a multiple of the VAE factor 8"):
        vae.encode(torch.zeros(1, 3, 30, 32))
    with pytest.raises(ValueError, match="power of two"):
        AutoencoderConfig(factor=12)
    with pytest.raises(ValueError, match="needs 6 channel widths"):
        AutoencoderConfig(factor=32, channels=(8, 16))


def test_shortcuts_are_pure_rearrangements():
    x = torch.randn(2, 8, 6, 4)
    down = space_to_channel(x, 32)  # 8 * 4 = 32 channels: a pure pixel-unshuffle
    torch.testing.assert_close(channel_to_space(down, 8), x)
    assert space_to_channel(x, 16).shape == (2, 16, 3, 2)
    assert channel_to_space(torch.randn(1, 16, 3, 3), 8).shape == (1, 8, 6, 6)


@pytest.mark.parametrize(("preset", "n_params"), [("f16c32", (5e7, 2e8)), ("f32c64", (1e8, 5e8))])
def test_large_presets_build_on_meta(preset, n_params):
    vae = build_on_meta(lambda: Autoencoder(AutoencoderConfig.preset(preset)))
    assert n_params[0] < count_parameters(vae) < n_params[1]


def _error_bands(tiled: torch.Tensor, full: torch.Tensor, period: int, band: int) -> tuple[float, float]:
    """Max error within `band` pixels of tile borders (every `period` pixels) and elsewhere."""
    err = (tiled - full).abs().amax(dim=(0, 1))
    idx = torch.arange(err.shape[0])
    near = ((idx % period) < band) | ((idx % period) >= period - band)
    near2d = near[:, None] | near[None, : err.shape[1]]
    return err[near2d].max().item(), err[~near2d].max().item()


def test_tiled_decode_matches_untiled_without_seams():
    torch.manual_seed(0)
    vae = Autoencoder(AutoencoderConfig.preset("tiny-f8")).eval()
    with torch.no_grad():
        z = torch.randn(1, 4, 40, 40)
        full = vae.decode(z)
        tiled = tiled_decode(vae, z, tile=16, overlap=4, margin=8)
    assert tiled.shape == full.shape
    assert (tiled - full).abs().max().item() < 1e-4
    # the receptive field fits in the margin, so tile borders are as exact as tile centres
    border, inside = _error_bands(tiled, full, period=(16 - 4) * 8, band=8)
    assert border <= max(2 * inside, 1e-5), (border, inside)

    with torch.no_grad():  # with too little context the blending keeps errors small and spread out
        rough = tiled_decode(vae, z, tile=16, overlap=4, margin=0)
    assert (rough - full).abs().mean().item() < 0.05


def test_tiled_encode_matches_untiled():
    torch.manual_seed(0)
    vae = Autoencoder(AutoencoderConfig.preset("tiny-f8")).eval()
    x = random_discs(1, 192, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(
            tiled_encode(vae, x, tile=64, overlap=16, margin=64), vae.encode(x), atol=1e-4, rtol=1e-4
        )
    with pytest.raises(ValueError, match="multiple of 8"):
        tiled_encode(vae, x, tile=60, overlap=16, margin=64)


def _train(cfg: AutoencoderConfig, steps: int, batch: int, size: int, lr: float) -> tuple[float, float]:
    return held_out_psnr(fit_on_discs(cfg, steps=steps, batch=batch, size=size, lr=lr))


def test_factor_8_vae_learns():
    """Honest learning: 200 steps (about 15 s on 2 cores) reach >= 19 dB on held-out disc images."""
    score, baseline = _train(AutoencoderConfig.preset("tiny-f8"), steps=200, batch=16, size=32, lr=2e-3)
    assert score >= 19.0 and score > baseline + 5, (score, baseline)


def test_factor_32_vae_learns():
    """32x compression (2x2 latents for 64 px): 400 steps (about 30 s) reach >= 15.5 dB, 2 dB over a flat
    mean-colour image; the shortcuts are what make it train (see benchmarks/vae_train.py)."""
    score, baseline = _train(AutoencoderConfig.preset("tiny-f32"), steps=400, batch=8, size=64, lr=1e-3)
    assert score >= 15.5 and score > baseline + 2, (score, baseline)
