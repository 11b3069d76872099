"""seedvr2-mini: the degraded shapes clips, the two-stage recipe (resumable, exported as a SeedVR2 model
directory) and the shipped model's held-out quality."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from seed_mini import clips, train_restore

SHIPPED = Path(train_restore.__file__).parent / "weights" / "seedvr2-mini"


def test_clips_are_reproducible_and_degraded() -> None:
    clean, degraded = clips.restoration_batch(3, 7, 2, 5, 64)
    again = clips.restoration_batch(3, 7, 2, 5, 64)
    assert clean.shape == degraded.shape == (2, 3, 5, 64, 64)
    assert torch.equal(clean, again[0]) and torch.equal(degraded, again[1])
    assert not torch.equal(clean, clips.restoration_batch(3, 8, 2, 5, 64)[0])
    assert 15 < clips.psnr(degraded, clean) < 35  # degraded, but the same scene
    assert clips.psnr(degraded, clean) < clips.psnr(clean, clean)
    assert clips.clip_batch(3, 7, 2, 5, 64, crop=32).shape == (2, 3, 5, 32, 32)
    pan = clips.sample_clip(random.Random(1), 3)  # every object moves by the same offset per frame
    step = [(b.x - a.x, b.y - a.y) for a, b in zip(pan[0].objects, pan[1].objects, strict=True)]
    assert len(set(step)) == 1 and step[0] != (0.0, 0.0)


def _losses(out: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records}


def test_recipe_resumes_on_the_same_curve_and_exports_a_model(tmp_path: Path) -> None:
    quiet = {"log": lambda _: None, "checkpoint_every": 2}
    vae_args = {"steps": 4, "batch": 1, "crop": 16, **quiet}
    train_restore.train_vae(tmp_path / "vae", **vae_args)
    train_restore.train_vae(tmp_path / "vae-b", stop_after=3, **vae_args)
    train_restore.train_vae(tmp_path / "vae-b", **vae_args)
    a, b = _losses(tmp_path / "vae"), _losses(tmp_path / "vae-b")
    assert a.keys() == b.keys() == {1, 2, 3, 4}
    assert all(a[k] == pytest.approx(b[k], rel=1e-5) for k in a)

    dit_args = {"steps": 4, "batch": 1, "size": 32, **quiet}
    train_restore.train_dit(tmp_path / "dit", tmp_path / "vae", **dit_args)
    train_restore.train_dit(tmp_path / "dit-b", tmp_path / "vae", stop_after=3, **dit_args)
    train_restore.train_dit(tmp_path / "dit-b", tmp_path / "vae", **dit_args)
    a, b = _losses(tmp_path / "dit"), _losses(tmp_path / "dit-b")
    assert a.keys() == {1, 2, 3, 4} and all(a[k] == pytest.approx(b[k], rel=1e-5) for k in a)

    train_restore.export(tmp_path / "dit", tmp_path / "vae", tmp_path / "model")
    from seed_core.specs import LoadOptions
    from seed_video.pipeline import SeedVR2Pipeline

    pipe = SeedVR2Pipeline.from_pretrained(train_restore._spec(), tmp_path / "model", LoadOptions())
    assert pipe.unit == 8 and pipe.vae.cfg.temporal_factor == 2
    out = pipe.restore_frames(torch.rand(3, 3, 24, 40), resolution=24, batch_frames=3)
    assert out.shape == (3, 3, 24, 40)


def test_shipped_seedvr2_mini_restores_held_out_clips() -> None:
    """The acceptance numbers on the first 16 held-out clips (+3.4 dB; benchmarks/RESULTS.md has the
    64-clip run, +3.9 dB): at least 3 dB over its bicubic-upscaled degraded input; and on 8 clips with a
    2-frame crossfade, and with `seed restore`'s defaults, the error of the frame-to-frame change across
    batch boundaries within 1.25x of that inside a batch (1.14x and 1.15x on 32 clips)."""
    from seed_core.pipeline import load

    assert (SHIPPED / "config.json").is_file()
    pipe = load("seedvr2-mini")
    plain = train_restore.evaluate(pipe, clips=16)
    assert plain["psnr_gain"] >= 3.0, plain
    faded = train_restore.evaluate(pipe, clips=8, overlap=2)
    assert faded["flicker_ratio"] < 1.25, faded
    # `seed restore`'s defaults (no overlap, the wavelet colour fix): 1.15x on 32 clips
    default = train_restore.evaluate(pipe, clips=8, color_fix="wavelet")
    assert default["flicker_ratio"] < 1.25, default


def test_tiled_video_decode_has_no_seams() -> None:
    """The shipped VAE decoding a clean 128x256 clip in 16-latent-pixel tiles: 44.4 dB against the whole
    decode, and the blend bands differ from the whole decode no more than the tile centres do (0.96x):
    what differs comes from the mid-block attention seeing one tile, not from the seams."""
    from seed_core.pipeline import load

    tiling = train_restore.vae_tiling(load("seedvr2-mini").vae)
    assert tiling["psnr_tiled_vs_whole"] >= 40.0, tiling
    assert tiling["seam_ratio"] <= 1.5, tiling
