"""SeedVR2 in bfloat16 and float16 on the CPU: the shipped seedvr2-mini restores close to float32, and a
dtype whose kernels the device lacks is refused in one line."""

from __future__ import annotations

import pytest
import torch

from seed_core.errors import UsageError
from seed_core.pipeline import load
from seed_core.specs import LoadOptions, ModelSpec
from seed_vae.loss import psnr
from seed_video.pipeline import random_pipeline

clips = pytest.importorskip("seed_mini.clips")  # seedvr2-mini and the shapes clips it was trained on

# PSNR against float32 over 3 degraded shapes frames of 32 x 32, measured on 8 clips at 32 and 48 px
# (torch 2.15, x86 CPU): bfloat16 52.7 .. 59.8 dB, float16 72.0 .. 78.2 dB (this clip: 52.7 and 72.0;
# 8-bit rounding alone is 58.9 dB). A broken cast or an overflow lands far below the bounds.
BOUNDS = {"bfloat16": 45.0, "float16": 60.0}


def test_seedvr2_mini_restores_in_bfloat16_and_float16_on_the_cpu() -> None:
    _, degraded = clips.restoration_batch(1, 0, 1, 3, 32)
    frames = (degraded[0].transpose(0, 1) + 1) / 2  # (T, 3, H, W) in [0, 1]
    reference = load("seedvr2-mini").restore_frames(frames, resolution=32, batch_frames=3)
    for dtype, bound in BOUNDS.items():
        pipe = load("seedvr2-mini", dtype=dtype)
        assert next(pipe.dit.parameters()).dtype == getattr(torch, dtype)
        out = pipe.restore_frames(frames, resolution=32, batch_frames=3)
        assert out.dtype == torch.float32 and bool(out.isfinite().all())
        db = psnr(out * 2 - 1, reference * 2 - 1)
        assert db > bound, (dtype, db)


def test_a_dtype_the_device_cannot_run_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = random_pipeline(
        ModelSpec("seedvr2-tiny-random", "seedvr2", ("restore",), lambda s, o: None),
        LoadOptions(dtype="bfloat16"),
    )

    def missing(*args: object, **kwargs: object) -> torch.Tensor:
        raise NotImplementedError("\"slow_conv3d_cpu\" not implemented for 'BFloat16'\nmore lines")

    monkeypatch.setattr(pipe.vae, "encode", missing)
    with pytest.raises(UsageError) as info:
        pipe.restore_frames(torch.rand(1, 3, 32, 32), resolution=32, batch_frames=1)
    message = str(info.value)
    assert "\n" not in message and message.startswith("--dtype bfloat16 does not run on cpu")
    assert "slow_conv3d_cpu" in message and message.endswith("use --dtype float32")
