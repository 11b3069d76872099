"""Delta files: weights stored as a low-bit difference from a named base (seed_core.delta)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from seed_core.delta import delta_record, load_delta, load_weights, save_delta
from seed_core.errors import CheckpointMismatchError, CheckpointNotFoundError, CorruptCheckpointError
from seed_core.weights import save_safetensors


def _base_and_copy(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A float16 base file and a copy of it moved by about 3% of its norm, as a distilled student is."""
    gen = torch.Generator().manual_seed(0)
    base = {
        "blocks.0.qkv.weight": torch.randn(96, 64, generator=gen),
        "blocks.0.conv.weight": torch.randn(16, 8, 3, 3, generator=gen),  # rows flatten to 72 inputs
        "blocks.0.odd.weight": torch.randn(8, 7, generator=gen),  # odd rows: 8 bits even in a 4-bit file
        "blocks.0.qkv.bias": torch.randn(96, generator=gen),
    }
    base = {k: v.half() for k, v in base.items()}
    save_safetensors(base, tmp_path / "dit.safetensors")
    copy = {
        k: v.float() + 0.03 * v.float().std() * torch.randn(v.shape, generator=gen) for k, v in base.items()
    }
    copy["guidance_in.weight"] = torch.randn(4, 4, generator=gen)  # not in the base: stored whole
    copy["steps"] = torch.arange(2049, 2060)  # not floating: kept exactly (float16 would round 2049)
    copy["mask"] = torch.arange(6) % 2 == 0
    copy["empty.weight"] = torch.zeros(0, 8)
    return tmp_path / "dit.safetensors", base, copy


def _error(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], base: dict[str, torch.Tensor], key: str
) -> float:
    """The error on `key` relative to how far the copy moved from the base."""
    moved = (a[key].float() - base[key].float()).norm()
    return float((a[key].float() - b[key].float()).norm() / moved)


@pytest.mark.parametrize(("bits", "bound"), [(8, 0.02), (4, 0.2)])
def test_a_delta_file_restores_the_weights_within_its_bits(tmp_path: Path, bits: int, bound: float) -> None:
    base_file, base, copy = _base_and_copy(tmp_path)
    file = save_delta(copy, base_file, tmp_path / "copy.safetensors", bits=bits)
    stored = load_file(str(file))
    assert f"blocks.0.qkv.weight#q{bits}" in stored and "blocks.0.qkv.weight" not in stored
    assert "blocks.0.odd.weight#q8" in stored  # 7 inputs a row: int4 cannot pack them
    assert delta_record(file) == {
        "base": delta_record(file)["base"],
        "base_file": "dit.safetensors",
        "bits": bits,
        "group": 64,
    }  # type: ignore[index]
    back = load_delta(file, tmp_path)  # the base's directory, or the file itself
    assert back.keys() == copy.keys()
    for key in ("blocks.0.qkv.weight", "blocks.0.conv.weight", "blocks.0.odd.weight"):
        err = _error(copy, back, base, key)
        assert err < (0.02 if key.endswith("odd.weight") else bound), (key, err)
        assert err > 0  # it is a quantization, not the weights themselves
    # small and new tensors are stored whole in float16
    assert torch.equal(back["blocks.0.qkv.bias"], copy["blocks.0.qkv.bias"].half().float())
    assert torch.equal(back["guidance_in.weight"], copy["guidance_in.weight"].half().float())
    for key in ("steps", "mask"):
        assert back[key].dtype == copy[key].dtype and torch.equal(back[key], copy[key]), key
    assert back["empty.weight"].shape == (0, 8)
    # 4 bits of a difference are far more exact than the float16 weights' own 8-bit quantization would be
    assert file.stat().st_size < base_file.stat().st_size * (0.62 if bits == 8 else 0.4)


def test_a_delta_file_needs_its_own_base(tmp_path: Path) -> None:
    base_file, base, copy = _base_and_copy(tmp_path)
    file = save_delta(copy, base_file, tmp_path / "copy.safetensors", bits=4)
    with pytest.raises(CheckpointNotFoundError, match="difference from dit.safetensors, which is not known"):
        load_weights(file)
    with pytest.raises(CheckpointNotFoundError, match="which is not at"):
        load_delta(file, tmp_path / "elsewhere")
    other = dict(base)
    other["blocks.0.qkv.bias"] = other["blocks.0.qkv.bias"] + 1
    (tmp_path / "other").mkdir()
    save_safetensors(other, tmp_path / "other" / "dit.safetensors")
    with pytest.raises(CheckpointMismatchError, match="made from another dit.safetensors"):
        load_delta(file, tmp_path / "other")
    # a plain weights file passes through
    assert torch.equal(load_weights(base_file)["blocks.0.qkv.weight"], base["blocks.0.qkv.weight"])


def test_a_damaged_delta_file_is_refused_by_name(tmp_path: Path) -> None:
    base_file, _, copy = _base_and_copy(tmp_path)
    file = save_delta(copy, base_file, tmp_path / "copy.safetensors", bits=4)
    stored = load_file(str(file))
    with open(file, "rb") as fh:  # keep the metadata, drop one tensor's scales
        import json
        import struct

        header = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
    meta = header["__metadata__"]
    save_file({k: v for k, v in stored.items() if k != "blocks.0.conv.weight#s"}, str(file), metadata=meta)
    with pytest.raises(CorruptCheckpointError, match="'blocks.0.conv.weight' is missing its scales"):
        load_delta(file, tmp_path)
    stored["blocks.0.conv.weight#q4"] = stored["blocks.0.conv.weight#q4"][:, :10].contiguous()
    save_file(stored, str(file), metadata=meta)
    with pytest.raises(CorruptCheckpointError, match="'blocks.0.conv.weight' does not fit its base"):
        load_delta(file, tmp_path)
    save_file(stored, str(file), metadata={"seed_delta": "{not json"})
    with pytest.raises(CorruptCheckpointError, match="'seed_delta' record is not valid"):
        load_weights(file, tmp_path)
