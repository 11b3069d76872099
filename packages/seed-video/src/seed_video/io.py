"""Frames in and out: an image, or a folder of numbered frames (PNG / JPEG), as (T, 3, H, W) in [0, 1].

Video files (mp4, ...) need a decoder library that is not a dependency yet; they are refused with one
line. Written frames carry the restore's parameters in their PNG metadata (`seed info FRAME`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from seed_core.errors import OutputExistsError, UsageError
from seed_core.images import from_pil, load_image, save_png, to_pil

IMAGES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEOS = (".mp4", ".mov", ".mkv", ".webm", ".avi")


def read_frames(path: Path) -> torch.Tensor:
    """An image file (one frame) or a folder of frames (sorted by name) -> (T, 3, H, W) in [0, 1]."""
    path = Path(path)
    if path.suffix.lower() in VIDEOS:
        raise UsageError(
            f"{path}: video files are not read yet; export its frames "
            f"(ffmpeg -i {path.name} frames/%05d.png) and give the folder"
        )
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGES)
        if not files:
            raise UsageError(f"{path}: no image frames ({', '.join(IMAGES)}) in this folder")
    elif path.is_file():
        files = [path]
    else:
        raise UsageError(f"{path}: no such file or folder")
    frames = [from_pil(load_image(f)) for f in files]
    if len({tuple(f.shape) for f in frames}) > 1:
        raise UsageError(f"{path}: the frames differ in size; give frames of one size")
    return torch.stack(frames)


def write_frames(
    frames: torch.Tensor, out: Path, metadata: dict[str, Any], *, force: bool = False
) -> list[Path]:
    """One frame to `out` if it names an image file, else frames `00000.png`, ... into the folder `out`."""
    out = Path(out)
    if out.suffix.lower() in IMAGES:
        if frames.shape[0] != 1:
            raise UsageError(f"{out}: {frames.shape[0]} frames need an output folder, not an image file")
        return [save_png(to_pil(frames[0]), out, metadata, force=force)]
    if out.suffix.lower() in VIDEOS:
        raise UsageError(f"{out}: video files are not written yet; give a folder for the frames")
    if out.exists() and any(out.iterdir()) and not force:
        raise OutputExistsError(f"{out} exists and is not empty; pass --force to overwrite its frames")
    out.mkdir(parents=True, exist_ok=True)
    return [
        save_png(to_pil(frame), out / f"{i:05d}.png", {**metadata, "frame": i}, force=True)
        for i, frame in enumerate(frames)
    ]
