"""The memory estimate of a restore (`seed_video.memory`) against what a real run holds."""

from __future__ import annotations

import pytest
import torch

from seed_core.memory import MIB, module_bytes, track
from seed_core.specs import LoadOptions, ModelSpec
from seed_video.config import NaDiTConfig
from seed_video.memory import RestoreSettings, estimate_restore
from seed_video.nadit import NaDiT
from seed_video.pipeline import _VAE, random_pipeline
from seed_video.restore import restore_clip

SPEC = ModelSpec("seedvr2-tiny-random", "seedvr2", ("restore",), lambda s, o: None)


@pytest.mark.parametrize("options", [{"vae_chunk": 0}, {"vae_chunk": 1}, {"tile": 6, "vae_chunk": 1}])
def test_estimate_on_fake_tensors_matches_a_real_run(options: dict[str, int]) -> None:
    """The same restore counted twice on the CPU: on fake tensors (the estimate) and on real ones."""
    pipe = random_pipeline(SPEC, LoadOptions())
    s = RestoreSettings(frames=9, height=64, width=64, dtype="float32", text_tokens=4, **options)
    estimate = estimate_restore(pipe.dit.cfg, pipe.vae.cfg, s, device="cpu")
    video = torch.rand(1, 3, s.frames, s.height, s.width) * 2 - 1
    text = pipe.pos_emb[None]
    weights = (module_bytes(pipe.dit) + module_bytes(pipe.vae)) / MIB
    real: dict[str, float] = {}
    with track("cpu") as tracker:
        tracker.hold(video)
        tracker.hold(text)

        def phase(name: str) -> None:
            real[name] = tracker.peak / MIB + weights
            tracker.reset()

        vae = _VAE(pipe.vae, s.tile, s.tile_overlap, s.vae_chunk or None)
        restore_clip(pipe.dit, vae, video, text, generator=torch.Generator().manual_seed(0), phase=phase)
    assert estimate["weights"] == pytest.approx(weights)
    for name, value in real.items():
        assert estimate[name] == pytest.approx(value, rel=0.05), name


def test_offloaded_blocks_leave_the_device_but_one() -> None:
    pipe = random_pipeline(SPEC, LoadOptions())
    cfg, vae_cfg = pipe.dit.cfg, pipe.vae.cfg
    s = RestoreSettings(frames=5, height=32, width=32, dtype="float32", text_tokens=4)
    whole = estimate_restore(cfg, vae_cfg, s, device="cpu")
    streamed = estimate_restore(cfg, vae_cfg, RestoreSettings(**{**s.__dict__, "offload_blocks": 2}), "cpu")
    blocks = [module_bytes(b) / MIB for b in pipe.dit.blocks[:2]]
    assert whole["weights"] - streamed["weights"] == pytest.approx(sum(blocks))
    assert whole["dit"] - streamed["dit"] == pytest.approx(sum(blocks) - max(blocks))
    with pytest.raises(ValueError, match="blocks"):
        estimate_restore(cfg, vae_cfg, RestoreSettings(**{**s.__dict__, "offload_blocks": 99}), "cpu")


def test_official_3b_at_720p_needs_what_the_h200_measured() -> None:
    """Session 11 measured the 3B with random weights on an H200 (720p, 21 frames, bf16, VAE chunks of 2
    latent frames): 8,713 MiB in the DiT phase, 5,065 with 16 blocks offloaded. The DiT phase has no
    convolution workspace, so the estimate must land close."""
    from seed_core.weights import build_on_meta
    from seed_vae.video import VideoVAEConfig

    cfg, vae_cfg = NaDiTConfig.preset("3b"), VideoVAEConfig.preset("seedvr2")
    # the whole clip through the VAE at once: quickest to count
    s = RestoreSettings(frames=21, height=720, width=1280, vae_chunk=0, offload_blocks=16)
    offloaded = estimate_restore(cfg, vae_cfg, s)["dit"]
    assert offloaded == pytest.approx(5065, rel=0.03)
    # the blocks back on the device (the offload arithmetic is tested above on a real model)
    blocks = [module_bytes(b) / MIB for b in build_on_meta(lambda: NaDiT(cfg)).blocks[:16]]
    assert offloaded + (sum(blocks) - max(blocks)) / 2 == pytest.approx(8713, rel=0.03)  # meta: fp32


def test_plan_takes_the_first_rung_of_the_ladder_that_fits() -> None:
    from seed_video.memory import WORKSPACE_MARGIN, _estimate, plan_restore

    pipe = random_pipeline(SPEC, LoadOptions())
    cfg, vae_cfg = pipe.dit.cfg, pipe.vae.cfg
    base = RestoreSettings(frames=5, height=192, width=192, dtype="float32", text_tokens=4, vae_chunk=0)
    chosen, _, fits = plan_restore(cfg, vae_cfg, base, 1e9, device="cpu")
    assert fits and chosen == base  # room for everything: nothing changes
    # the whole ladder, then a budget between two rungs
    rungs = [
        base,
        RestoreSettings(**{**base.__dict__, "vae_chunk": 1}),
        RestoreSettings(**{**base.__dict__, "vae_chunk": 1, "offload_blocks": cfg.layers}),
    ]
    rungs += [RestoreSettings(**{**rungs[-1].__dict__, "tile": t}) for t in (64, 48, 32, 24, 16)]
    need = [max(p[k] for k in ("encode", "dit", "decode")) * (1 + WORKSPACE_MARGIN) for _, p in
            _estimate(cfg, vae_cfg, rungs, "cpu")]  # fmt: skip
    # the rungs together save (not each: streaming a 5-frame batch costs more than it saves)
    assert need[-1] < 0.75 * need[0] and need[1] > need[0]
    # latent 24 x 24: tiles of 64, 48, 32 and 24 change nothing, 16 is the first that does
    assert need[3] == need[4] == need[5] == need[6] > need[7]
    budget = (need[6] + need[7]) / 2
    first = next(i for i, n in enumerate(need) if n <= budget)
    chosen, peaks, fits = plan_restore(cfg, vae_cfg, base, budget, device="cpu")
    assert fits and chosen == rungs[first] and chosen.tile is not None
    assert max(peaks[k] for k in ("encode", "dit", "decode")) * (1 + WORKSPACE_MARGIN) <= budget
