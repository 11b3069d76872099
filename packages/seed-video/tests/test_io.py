"""Output paths of `seed restore` and `seed video`, checked before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from seed_core.errors import SeedError, UsageError
from seed_video.io import check_output, write_frames


def test_an_output_write_frames_cannot_take_is_refused_first(tmp_path: Path) -> None:
    # a typo in the extension had become a folder of frames named "out.txt"
    with pytest.raises(UsageError, match=r"out.txt: unknown extension '.txt'; name an image"):
        check_output(tmp_path / "out.txt")
    assert not (tmp_path / "out.txt").exists()
    check_output(tmp_path / "out.png")
    check_output(tmp_path / "frames")  # a new folder
    (tmp_path / "frames").mkdir()
    check_output(tmp_path / "frames")  # an empty one
    frames = torch.rand(2, 3, 8, 8)
    write_frames(frames, tmp_path / "frames", {})
    with pytest.raises(UsageError, match="exists and is not empty; pass --force"):
        check_output(tmp_path / "frames")
    check_output(tmp_path / "frames", force=True)  # a second run into the folder (it had always failed)
    assert len(write_frames(frames, tmp_path / "frames", {}, force=True)) == 2
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file; give a folder name"):
        check_output(tmp_path / "file")
    (tmp_path / "old.png").write_bytes(b"x")
    with pytest.raises(SeedError, match="already exists; pass --force"):
        check_output(tmp_path / "old.png")


def test_restore_refuses_an_unknown_extension_before_reading(tmp_path: Path, seed_registry_factory) -> None:  # type: ignore[no-untyped-def]
    from seed_cli.main import create_app

    seed_registry_factory(entry_points=True, env={})
    args = ["restore", str(tmp_path / "none.png"), "-o", str(tmp_path / "r.txt"), "-m", "seedvr2-mini"]
    result = CliRunner().invoke(create_app(), args)
    assert result.exit_code == 2 and "unknown extension '.txt'" in result.output, result.output
