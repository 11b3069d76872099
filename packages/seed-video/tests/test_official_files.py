"""Which DiT file of a folder of official SeedVR2 files a model loads: its own (3B or 7B) when both sit
in one folder, the plain one over `_sharp`, any file named with --weights FILE; an ambiguous folder is
refused in one line that lists the files (no real 3B / 7B is ever built here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from seed_core import hookimpl
from seed_core.errors import ConfigError, UsageError
from seed_core.pipeline import load
from seed_core.specs import LoadOptions, ModelSpec
from seed_video.pipeline import official_dit_file, random_pipeline

SPEC = ModelSpec("seedvr2-tiny-random", "seedvr2", ("restore",), lambda s, o: None)


def _folder(path: Path, *names: str) -> Path:
    """Empty stand-ins: the choice is made by name, before any file is read."""
    path.mkdir(exist_ok=True)
    for name in (*names, "ema_vae.pth", "pos_emb.pt"):
        (path / name).write_bytes(b"")
    return path


def test_each_model_picks_its_own_file_and_the_plain_one_over_sharp(tmp_path: Path) -> None:
    both = _folder(
        tmp_path / "comfyui", "seedvr2_ema_3b.pth", "seedvr2_ema_7b.pth", "seedvr2_ema_7b_sharp.pth"
    )
    assert official_dit_file(both, "3b").name == "seedvr2_ema_3b.pth"
    assert official_dit_file(both, "7b").name == "seedvr2_ema_7b.pth"
    repacks = _folder(
        tmp_path / "repacks", "seedvr2_ema_3b_fp16.safetensors", "seedvr2_ema_7b_sharp_fp16.safetensors"
    )
    assert official_dit_file(repacks, "3b").name == "seedvr2_ema_3b_fp16.safetensors"
    assert official_dit_file(repacks, "7b").name == "seedvr2_ema_7b_sharp_fp16.safetensors"  # the only 7B


def test_an_ambiguous_or_foreign_folder_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path / "a", "seedvr2_ema_7b.pth", "seedvr2_ema_7b_fp16.safetensors", "seedvr2_ema_7b_sharp.pth"
    )
    with pytest.raises(ConfigError) as info:
        official_dit_file(folder, "7b")
    message = str(info.value)
    assert "\n" not in message and "several SeedVR2-7B DiT files" in message
    assert "seedvr2_ema_7b.pth, seedvr2_ema_7b_fp16.safetensors, seedvr2_ema_7b_sharp.pth" in message
    assert "choose one with --weights FILE" in message
    with pytest.raises(
        ConfigError, match="seedvr2_ema_7b_sharp.pth: a SeedVR2-7B checkpoint; load it with -m seedvr2-7b"
    ):
        official_dit_file(_folder(tmp_path / "b", "seedvr2_ema_7b_sharp.pth"), "3b")
    with pytest.raises(
        ConfigError, match="no seedvr2_ema_3b\\* file among seedvr2_ema_custom.pth; name the DiT"
    ):
        official_dit_file(_folder(tmp_path / "c", "seedvr2_ema_custom.pth"), "3b")
    with pytest.raises(ConfigError, match="no DiT file \\(seedvr2_ema_3b\\*"):
        official_dit_file(_folder(tmp_path / "d"), "3b")


def test_a_file_given_with_weights_is_checked_against_the_model(tmp_path: Path) -> None:
    """--weights FILE goes through `load` (a file is accepted now) to the official loader, which reads
    that file: a 7B-wide patch embedding given to seedvr2-3b names the model to use."""
    from safetensors.torch import save_file

    folder = _folder(tmp_path / "m", "seedvr2_ema_3b.pth")
    save_file({"vid_in.proj.weight": torch.zeros(3072, 132)}, folder / "seedvr2_ema_7b_sharp.safetensors")
    torch.save(torch.zeros(58, 5120), folder / "pos_emb.pt")
    with pytest.raises(
        ConfigError, match="_sharp.safetensors: a SeedVR2-7B checkpoint; load it with -m seedvr2-7b"
    ):
        load("seedvr2-3b", weights=str(folder / "seedvr2_ema_7b_sharp.safetensors"))
    with pytest.raises(UsageError, match="name the DiT file"):
        load("seedvr2-3b", weights=str(folder / "ema_vae.pth"))
    with pytest.raises(UsageError, match="no such file or directory"):
        load("seedvr2-3b", weights=str(folder / "missing.pth"))


class _Tiny:
    """SeedVR2's official loader at the tiny preset: `seedvr2-tiny` reads `seedvr2_ema_tiny*` files."""

    @hookimpl
    def seed_register_models(self, register):  # type: ignore[no-untyped-def]
        from seed_video.plugin import _build

        register(ModelSpec("seedvr2-tiny", "seedvr2", ("restore",), _build))


def test_the_sharp_variant_is_chosen_with_weights_file(
    tmp_path: Path, seed_registry_factory, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from seed_vae import video as video_module
    from seed_video import pipeline as pipeline_module

    plain, sharp = (random_pipeline(SPEC, LoadOptions(), seed=s) for s in (0, 1))
    folder = tmp_path / "official"
    folder.mkdir()
    torch.save(plain.dit.state_dict(), folder / "seedvr2_ema_tiny.pth")
    torch.save(sharp.dit.state_dict(), folder / "seedvr2_ema_tiny_sharp.pth")
    torch.save(plain.vae.state_dict(), folder / "ema_vae.pth")
    torch.save(plain.pos_emb, folder / "pos_emb.pt")
    tiny = video_module.VideoVAEConfig.preset("tiny")
    monkeypatch.setattr(pipeline_module.VideoVAEConfig, "preset", classmethod(lambda cls, name, **kw: tiny))
    seed_registry_factory(_Tiny())

    def weights_of(pipe):  # type: ignore[no-untyped-def]
        return pipe.dit.state_dict()["vid_in.proj.weight"]

    assert torch.equal(weights_of(load("seedvr2-tiny", weights=str(folder))), weights_of(plain))
    chosen = load("seedvr2-tiny", weights=str(folder / "seedvr2_ema_tiny_sharp.pth"))
    assert torch.equal(weights_of(chosen), weights_of(sharp))


def test_restore_prints_the_ambiguity_as_one_line(tmp_path: Path, seed_registry_factory) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from seed_cli.main import create_app

    seed_registry_factory(entry_points=True, env={})
    Image.new("RGB", (32, 32)).save(tmp_path / "in.png")
    folder = _folder(tmp_path / "m", "seedvr2_ema_7b.pth", "seedvr2_ema_7b_fp16.safetensors")
    args = ["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "-m", "seedvr2-7b"]
    result = CliRunner().invoke(create_app(), [*args, "--weights", str(folder)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "several SeedVR2-7B DiT files" in lines[0], result.output


def test_restore_refuses_a_negative_seed_before_reading(tmp_path: Path, seed_registry_factory) -> None:  # type: ignore[no-untyped-def]
    from seed_cli.main import create_app

    seed_registry_factory(entry_points=True, env={})
    args = ["restore", str(tmp_path / "none.png"), "-o", str(tmp_path / "out.png"), "-m", "seedvr2-mini"]
    result = CliRunner().invoke(create_app(), [*args, "--seed", "-1"])
    assert result.exit_code == 2 and "--seed must be >= 0, got -1" in result.output, result.output
