"""`seed inspect` (files and registered models) and `seed convert` (.pth -> safetensors, same keys)."""

from __future__ import annotations

from pathlib import Path

import torch


def test_inspect_a_registered_model_lists_the_official_layout(run) -> None:  # type: ignore[no-untyped-def]
    result = run("inspect", "seedvr2-7b")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1128 + 250
    assert "dit: blocks.0.attn.rope.rope.freqs [10] float32" in lines
    assert "vae: encoder.conv_in.weight [128, 3, 3, 3, 3] float32" in lines


def test_convert_a_pth_and_inspect_it(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    state = {"a.weight": torch.randn(3, 4), "b": torch.arange(5)}
    torch.save(state, tmp_path / "w.pth")
    out = tmp_path / "w.safetensors"
    result = run("convert", str(tmp_path / "w.pth"), str(out), "--dtype", "bfloat16")
    assert result.exit_code == 0, result.output
    listed = run("inspect", str(out)).output.strip().splitlines()
    assert listed == ["a.weight [3, 4] bfloat16", "b [5] int64"]
    assert run("inspect", str(tmp_path / "w.pth")).output.strip().splitlines()[0] == "a.weight [3, 4] float32"
    again = run("convert", str(tmp_path / "w.pth"), str(out))
    assert again.exit_code == 2 and "--force" in again.output

    # an unsafe pickle is refused, not executed
    torch.save({"a": torch.zeros(1), "code": print}, tmp_path / "bad.pth")
    bad = run("convert", str(tmp_path / "bad.pth"), str(tmp_path / "bad.safetensors"))
    assert bad.exit_code != 0 and "refused" in bad.output

    restore = run("generate", "x", "-m", "seedvr2-3b", "-o", str(tmp_path / "x.png"))
    assert restore.exit_code != 0 and "ships no weights" in restore.output
