"""seed-attn's attention accelerators on SeedVR2's NaDiT (seedvr2-tiny-random, as `seed restore --accel`
loads it): flex and int8-attn reach every window attention call and match sdpa; PARO is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from seed_core.attention import attention
from seed_core.errors import AcceleratorError, AttentionInputError
from seed_core.pipeline import load
from seed_vae.loss import psnr as vae_psnr
from seed_video import nadit

pytest.importorskip("seed_attn")  # the accelerators come from seed-attn's plugin

MODEL = "seedvr2-tiny-random"
# 17 frames -> 5 latent frames: windows of 2 and 1 frames, plain and shifted (several extents per layer)
FRAMES = torch.rand(17, 3, 32, 48, generator=torch.Generator().manual_seed(0))


def restore(pipe: Any) -> torch.Tensor:
    # no colour fix: it would copy the input's low frequencies over the differences under test
    return pipe.restore_frames(FRAMES, resolution=32, batch_frames=17, color_fix="none")


def spied(monkeypatch: pytest.MonkeyPatch, *accel: str) -> tuple[torch.Tensor, set[str | None]]:
    """Frames restored with `accel`, and the `backend=` of every attention call NaDiT made."""
    seen: set[str | None] = set()

    def spy(*args: Any, **kwargs: Any) -> torch.Tensor:
        seen.add(kwargs.get("backend"))
        return attention(*args, **kwargs)

    monkeypatch.setattr(nadit, "attention", spy)
    return restore(load(MODEL, accelerators=accel)), seen


@pytest.fixture(scope="module")
def sdpa() -> torch.Tensor:
    return restore(load(MODEL))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:  # frames in [0, 1]
    return vae_psnr(a * 2 - 1, b * 2 - 1)


@pytest.mark.filterwarnings("ignore:seed-attn. FlexAttention runs unfused")
def test_flex_reaches_every_window_call_and_matches_sdpa(
    monkeypatch: pytest.MonkeyPatch, sdpa: torch.Tensor
) -> None:
    out, seen = spied(monkeypatch, "flex")
    assert seen == {"flex"}
    torch.testing.assert_close(out, sdpa, atol=2e-5, rtol=0)  # float32, another kernel: 3e-6 measured


@pytest.mark.parametrize(("accel", "backend"), [("int8-attn", "int8"), ("int8-attn:pv_bits=8", "int8-pv8")])
def test_int8_attention_reaches_every_window_call_and_stays_close(
    monkeypatch: pytest.MonkeyPatch, sdpa: torch.Tensor, accel: str, backend: str
) -> None:
    out, seen = spied(monkeypatch, accel)
    assert seen == {backend} and not torch.equal(out, sdpa)
    # measured on four clips: 84.7-88.8 dB (pv_bits=16), 81.2-85.5 dB (8); this clip 88.4 / 83.6. The bound
    # fails an attention that is slightly wrong: sdpa with its scale off by 10% gives 67 dB, uniform weights
    # 47 dB (the random DiT's attention moves the one-step output little, hence the high numbers)
    assert psnr(out, sdpa) > 75


def test_paro_is_refused_with_one_line(tmp_path: Path) -> None:
    """NaDiT's windows have no single token layout for a PARO plan: refused when the plan is installed
    (before any work), by `seed calibrate` too; paro:kernel=flex stops at the first call."""
    (tmp_path / "plan.json").write_text("{}")  # plans are read on first use: any JSON gets past the check
    with pytest.raises(AcceleratorError, match="needs one token layout per layer") as refused:
        load(MODEL, accelerators=[f"paro:plan={tmp_path}"])
    assert "\n" not in str(refused.value)
    from seed_attn.calibrate import calibrate

    with pytest.raises(AcceleratorError, match="'paro-calibrate' needs one token layout per layer"):
        calibrate(MODEL, out=tmp_path / "plan")
    pipe = load(MODEL, accelerators=[f"paro:plan={tmp_path},kernel=flex"])
    with pytest.raises(AttentionInputError, match="declares its token layout"):
        restore(pipe)
