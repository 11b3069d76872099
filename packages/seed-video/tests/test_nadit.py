"""NaDiT against the official layout (notes-seedvr2 §1): key sets and shapes on the meta device, the window
rules, and a tiny model's forward pass."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from seed_core.weights import build_on_meta
from seed_video.config import NaDiTConfig
from seed_video.nadit import NaDiT, axis_windows, partition, rotate, window_size

# notes-seedvr2 appendix C: the top-level keys and whole representative blocks (3B blocks 0 and 10, 7B
# block 0) with their shapes; appendix A says which blocks share each one's layout
KEYS = Path(__file__).parent / "data" / "seedvr2_dit_keys.txt"
BLOCKS = {"3b": {0: range(0, 10), 10: range(10, 32)}, "7b": {0: range(0, 36)}}


def official_layout(preset: str) -> dict[str, tuple[int, ...]]:
    """Every key of the official file with its shape, expanded from the appendix's blocks."""
    layout = {}
    for line in KEYS.read_text().splitlines():
        model, key, shape = line.split(" ", 2)
        if model.lower() != preset:
            continue
        dims = tuple(int(n) for n in shape.strip("[]").split(", "))
        if not key.startswith("blocks."):
            layout[key] = dims
            continue
        _, index, rest = key.split(".", 2)
        for block in BLOCKS[preset][int(index)]:
            layout[f"blocks.{block}.{rest}"] = dims
    return layout


COUNTS = {"3b": (635, 3_391_476_448), "7b": (1128, 8_239_608_232)}


@pytest.mark.parametrize("preset", ["3b", "7b"])
def test_official_key_sets_and_sizes(preset: str) -> None:
    state = build_on_meta(lambda: NaDiT(NaDiTConfig.preset(preset))).state_dict()
    assert (len(state), sum(t.numel() for t in state.values())) == COUNTS[preset]
    expected = official_layout(preset)
    assert len(expected) == COUNTS[preset][0]  # the expansion covers the whole file
    assert {key: tuple(t.shape) for key, t in state.items()} == expected
    per_block = 29 if preset == "3b" else 31
    assert sum(k.startswith("blocks.0.") for k in state) == per_block
    if preset == "3b":
        assert sum(k.startswith("blocks.10.") for k in state) == 15
        assert not any(".vid." in k for k in state if k.startswith("blocks.10."))
    else:
        assert not any(k.startswith("vid_out_norm") or ".all." in k for k in state)


def test_rope_frequencies_are_the_official_values() -> None:
    three = NaDiT(NaDiTConfig.preset("tiny", head_dim=128, heads=1))
    i = torch.arange(21, dtype=torch.float32)
    torch.testing.assert_close(three.blocks[0].attn.rope.rope.freqs, 10000.0 ** (-2 * i / 42))
    seven = NaDiT(NaDiTConfig.preset("tiny", head_dim=128, heads=1, rope="pixel"))
    torch.testing.assert_close(seven.blocks[0].attn.rope.rope.freqs, torch.linspace(1, 128, 10) * math.pi)


# (output W x H, frames) -> token grid, window size, windows plain / shifted (notes-seedvr2 §1.5)
WINDOW_TABLE = [
    ((21, 45, 80), (6, 15, 27), 36, 64),
    ((21, 67, 120), (6, 15, 27), 100, 100),
    ((21, 68, 120), (6, 15, 27), 100, 120),
    ((21, 135, 240), (6, 15, 27), 324, 400),
    ((9, 30, 53), (3, 15, 27), 12, 36),
    ((1, 64, 64), (1, 20, 20), 16, 16),
    ((2, 45, 80), (1, 15, 27), 18, 32),
]


@pytest.mark.parametrize(("grid", "size", "plain", "shifted"), WINDOW_TABLE)
def test_adaptive_windows(grid, size, plain, shifted) -> None:  # type: ignore[no-untyped-def]
    assert window_size(grid) == size
    for is_shifted, count in ((False, plain), (True, shifted)):
        windows = partition(grid, size, is_shifted)
        assert len(windows) == count
        covered = torch.zeros(grid, dtype=torch.int32)
        for (t0, t1), (h0, h1), (w0, w1) in windows:
            covered[t0:t1, h0:h1, w0:w1] += 1
        assert bool((covered == 1).all())  # every token in exactly one window


def test_shifted_windows_start_half_a_window_early() -> None:
    assert axis_windows(45, 15, True) == [(0, 7), (7, 22), (22, 37), (37, 45)]
    assert axis_windows(1, 1, True) == [(0, 1)]


def test_rotation_is_gptj_pairs_and_keeps_the_rest() -> None:
    x = torch.randn(5, 8)
    angles = torch.rand(5, 3)
    y = rotate(x, angles)
    torch.testing.assert_close(y[:, 6:], x[:, 6:])
    c, s = angles[:, 1].cos(), angles[:, 1].sin()
    torch.testing.assert_close(y[:, 2], x[:, 2] * c - x[:, 3] * s)
    torch.testing.assert_close(y[:, 3], x[:, 3] * c + x[:, 2] * s)
    torch.testing.assert_close(y.norm(dim=1), x.norm(dim=1))


@pytest.mark.parametrize(
    "style", [{}, {"mlp": "gelu", "rope": "pixel", "out_norm": False, "vid_only_last": False}]
)
def test_tiny_forward(style: dict) -> None:  # type: ignore[type-arg]
    torch.manual_seed(0)
    model = NaDiT(NaDiTConfig.preset("tiny", **style))
    x = torch.randn(2, 33, 3, 8, 12)
    text = torch.randn(2, 5, 48)
    out = model(x, text, torch.tensor([1000.0, 500.0]))
    assert out.shape == (2, 16, 3, 8, 12) and bool(torch.isfinite(out).all())
    other = model(x, text + 1, torch.tensor([1000.0, 500.0]))
    assert not torch.allclose(out, other)  # the text conditions the video


def test_windows_isolate_video_tokens_within_a_layer() -> None:
    """One plain-window layer: changing the video in one window leaves other windows' outputs alone
    (text keys and values do not depend on the video inside a layer)."""
    torch.manual_seed(0)
    model = NaDiT(NaDiTConfig.preset("tiny", layers=1, mm_layers=1, vid_only_last=False))
    x = torch.randn(1, 33, 1, 80, 80)  # token grid 1 x 40 x 40: 2 x 2 windows of 20 x 20 tokens
    assert window_size((1, 40, 40)) == (1, 20, 20)
    t, text = torch.tensor([700.0]), torch.randn(1, 4, 48)
    base = model(x, text, t)
    y = x.clone()
    y[..., :40, :40] += 1.0  # the latents of tokens (0..19, 0..19): the first window
    out = model(y, text, t)
    assert not torch.allclose(out[..., :40, :40], base[..., :40, :40])
    torch.testing.assert_close(out[..., 40:, :], base[..., 40:, :])
    torch.testing.assert_close(out[..., :40, 40:], base[..., :40, 40:])
