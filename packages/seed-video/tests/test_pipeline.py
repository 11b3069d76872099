"""The SeedVR2 pipeline on tiny random weights: sizes, batches with overlap, save / load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seed_core.errors import ConfigError, UsageError
from seed_core.specs import LoadOptions, ModelSpec
from seed_video.pipeline import SeedVR2Pipeline, batch_starts, output_size, random_pipeline

SPEC = ModelSpec("seedvr2-tiny-random", "seedvr2", ("restore",), lambda s, o: None)


def test_output_size_and_batches() -> None:
    assert output_size(40, 56, 48) == (48, 64)  # short side 48, sides down to multiples of 16
    assert output_size(720, 1280, "1920x1080") == (1072, 1920)
    with pytest.raises(UsageError, match="WIDTHxHEIGHT"):
        output_size(10, 10, "big")
    with pytest.raises(UsageError, match="the output is 99999x99999; sides up to 8192"):
        output_size(64, 64, 99999)  # had run for minutes (or out of memory) before failing
    assert batch_starts(7, 5, 2) == [0, 3]
    assert batch_starts(5, 5, 0) == [0] and batch_starts(11, 5, 0) == [0, 5, 10]


def test_restore_frames_keeps_every_frame_and_is_seeded() -> None:
    pipe = random_pipeline(SPEC, LoadOptions())
    frames = torch.rand(7, 3, 40, 56)
    a = pipe.restore_frames(frames, resolution=48, batch_frames=5, overlap=2, seed=3)
    b = pipe.restore_frames(frames, resolution=48, batch_frames=5, overlap=2, seed=3)
    assert a.shape == (7, 3, 48, 64) and torch.equal(a, b) and 0 <= float(a.min()) and float(a.max()) <= 1
    tiled = pipe.restore_frames(frames, resolution=48, batch_frames=5, tile=4, seed=3)
    assert tiled.shape == a.shape
    with pytest.raises(UsageError, match="4n \\+ 1"):
        pipe.restore_frames(frames, batch_frames=4)
    with pytest.raises(UsageError, match="--overlap"):
        pipe.restore_frames(frames, batch_frames=5, overlap=5)


def test_save_and_load_a_model_directory(tmp_path: Path) -> None:
    pipe = random_pipeline(SPEC, LoadOptions())
    pipe.save_pretrained(tmp_path / "m", dtype="float32")
    loaded = SeedVR2Pipeline.from_pretrained(SPEC, tmp_path / "m", LoadOptions())
    frames = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(
        loaded.restore_frames(frames, resolution=32, batch_frames=1),
        pipe.restore_frames(frames, resolution=32, batch_frames=1),
    )


def test_official_files_load_with_either_vae_naming(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The release's layout (.pth DiT and VAE, pos_emb.pt), here at the tiny preset: the keys are the
    official ones by construction (see test_nadit / test_video_vae for the full-size sets)."""
    from seed_vae import video as video_module
    from seed_video import pipeline as pipeline_module

    pipe = random_pipeline(SPEC, LoadOptions())
    vae_state = {
        k.replace("to_q.", "query.").replace("to_out.0.", "proj_attn."): v
        for k, v in pipe.vae.state_dict().items()
    }
    torch.save(pipe.dit.state_dict(), tmp_path / "seedvr2_ema_tiny.pth")
    torch.save(vae_state, tmp_path / "ema_vae.pth")
    torch.save(pipe.pos_emb.bfloat16(), tmp_path / "pos_emb.pt")
    tiny = video_module.VideoVAEConfig.preset("tiny")
    monkeypatch.setattr(pipeline_module.VideoVAEConfig, "preset", classmethod(lambda cls, name, **kw: tiny))
    loaded = SeedVR2Pipeline.from_official(SPEC, tmp_path, "tiny", LoadOptions())
    for a, b in zip(loaded.dit.state_dict().values(), pipe.dit.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(
        loaded.vae.state_dict()["encoder.mid_block.attentions.0.to_q.weight"],
        pipe.vae.state_dict()["encoder.mid_block.attentions.0.to_q.weight"],
    )
    (tmp_path / "pos_emb.pt").unlink()
    with pytest.raises(Exception, match="no pos_emb.pt"):
        SeedVR2Pipeline.from_official(SPEC, tmp_path, "tiny", LoadOptions())
    # one DiT file named: the other files are looked for beside it, and the message says so
    (tmp_path / "ema_vae.pth").unlink()
    with pytest.raises(ConfigError, match=r"beside the DiT file seedvr2_ema_tiny.pth.*: no VAE file"):
        SeedVR2Pipeline.from_official(SPEC, tmp_path / "seedvr2_ema_tiny.pth", "tiny", LoadOptions())


def test_offloaded_blocks_give_the_same_frames_and_phases_report_memory() -> None:
    frames = torch.rand(5, 3, 32, 32)
    plain = random_pipeline(SPEC, LoadOptions())
    expected = plain.restore_frames(frames, resolution=32, batch_frames=5)
    assert set(plain.peaks) == {"encode", "dit", "decode"} and min(plain.peaks.values()) > 0
    swapped = random_pipeline(SPEC, LoadOptions())
    assert swapped.place("cpu", offload=2) == 2
    torch.testing.assert_close(swapped.restore_frames(frames, resolution=32, batch_frames=5), expected)
    with pytest.raises(UsageError, match="has 3 blocks"):
        swapped.offload_blocks(4)


def test_vae_chunks_tiles_and_phase_progress() -> None:
    pipe = random_pipeline(SPEC, LoadOptions())
    frames = torch.rand(9, 3, 32, 48)
    calls: list[tuple[str, int, int]] = []
    whole = pipe.restore_frames(
        frames, resolution=32, batch_frames=9, vae_chunk=0, progress=lambda *call: calls.append(call)
    )
    assert calls == [("encode", 1, 1), ("dit", 1, 1), ("decode", 1, 1)]
    chunked = pipe.restore_frames(frames, resolution=32, batch_frames=9, vae_chunk=1)
    torch.testing.assert_close(chunked, whole, atol=1e-4, rtol=0)  # temporal chunks are exact
    tiled = pipe.restore_frames(frames, resolution=32, batch_frames=9, tile=4, tile_overlap=2)
    assert tiled.shape == whole.shape and float((tiled - whole).abs().mean()) < 0.1
    with pytest.raises(UsageError, match="--tile-overlap 4: needs --tile"):
        pipe.restore_frames(frames, tile=4, tile_overlap=4)
    with pytest.raises(UsageError, match="--vae-chunk -1"):
        pipe.restore_frames(frames, vae_chunk=-1)
    with pytest.raises(UsageError, match="at least 16 x 16"):
        pipe.restore_frames(frames, resolution=8)


def test_a_checkpoint_of_the_other_official_model_is_named(tmp_path: Path) -> None:
    """A 7B file given to the 3B model: the error says which model the file is for."""
    from safetensors.torch import save_file

    save_file({"vid_in.proj.weight": torch.zeros(3072, 132)}, tmp_path / "seedvr2_ema_7b.safetensors")
    (tmp_path / "ema_vae.pth").write_bytes(b"")
    torch.save(torch.zeros(58, 5120), tmp_path / "pos_emb.pt")
    with pytest.raises(ConfigError, match="a SeedVR2-7B checkpoint; load it with -m seedvr2-7b"):
        SeedVR2Pipeline.from_official(SPEC, tmp_path, "3b", LoadOptions())
