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


def test_convert_to_a_delta_file_and_back(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from seed_core.weights import load_safetensors, read_metadata, save_safetensors

    gen = torch.Generator().manual_seed(0)
    base = {
        "blocks.0.weight": torch.randn(64, 128, generator=gen),
        "blocks.0.bias": torch.randn(64, generator=gen),
    }
    save_safetensors(base, tmp_path / "dit.safetensors", dtype="float16")
    tuned = {k: v + 0.02 * torch.randn(v.shape, generator=gen) for k, v in base.items()}
    save_safetensors(tuned, tmp_path / "tuned.safetensors", metadata={"seed_paro_tuned": "{}"})
    small = tmp_path / "small.safetensors"
    args = ("convert", str(tmp_path / "tuned.safetensors"), str(small))
    result = run(*args, "--base", str(tmp_path), "--delta-bits", "4")  # the base's directory
    assert result.exit_code == 0, result.output
    assert (
        "the difference from" in result.output
        and small.stat().st_size < 0.2 * (tmp_path / "tuned.safetensors").stat().st_size
    )
    assert "seed_delta" in read_metadata(small) and "seed_paro_tuned" in read_metadata(small)  # kept
    assert run("inspect", str(small)).output.splitlines()[0].startswith("blocks.0.bias [64] float16")
    whole = tmp_path / "whole.safetensors"
    back = run(
        "convert", str(small), str(whole), "--base", str(tmp_path / "dit.safetensors"), "--dtype", "float32"
    )
    assert back.exit_code == 0, back.output
    restored = load_safetensors(whole)
    moved = (tuned["blocks.0.weight"] - base["blocks.0.weight"]).norm()
    assert (restored["blocks.0.weight"] - tuned["blocks.0.weight"]).norm() < 0.2 * moved
    assert "seed_delta" not in read_metadata(whole) and "seed_paro_tuned" in read_metadata(whole)
    half = tmp_path / "half.safetensors"  # written whole, a delta comes back in float16 unless told
    assert run("convert", str(small), str(half), "--base", str(tmp_path)).exit_code == 0
    assert load_safetensors(half)["blocks.0.weight"].dtype == torch.float16
    for extra, message in (
        (["--delta-bits", "4"], "give --base"),
        (["--base", str(tmp_path)], "--base is for a delta file, or with --delta-bits"),
        (["--base", str(tmp_path), "--delta-bits", "8", "--dtype", "float16"], "takes no --dtype"),
        (["--base", str(tmp_path), "--delta-bits", "3"], "--delta-bits 3: use 8 or 4"),
        (["--base", str(tmp_path / "nothing"), "--delta-bits", "8"], "no such weights file"),
    ):
        bad = run("convert", str(tmp_path / "tuned.safetensors"), str(tmp_path / "o.safetensors"), *extra)
        assert bad.exit_code != 0 and message in bad.output, bad.output
    orphan = run("convert", str(small), str(tmp_path / "o.safetensors"))  # a delta file without its base
    assert orphan.exit_code != 0 and "is a delta file: give --base" in orphan.output
    assert len(orphan.output.strip().splitlines()) == 1
