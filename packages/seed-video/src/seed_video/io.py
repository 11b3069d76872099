"""Frames in and out as (T, 3, H, W) in [0, 1]: an image, a folder of numbered frames (PNG / JPEG), or a
video file (mp4, mov, mkv, webm, avi) through PyAV (`pip install 'seed-video[io]'`), whose frame rate is
kept. Videos are written as H.264 (yuv420p, CRF 17) with the restore's parameters in the container's
comment; frames carry them in their PNG metadata (`seed info FRAME`). Audio is not carried over.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from seed_core.errors import OutputExistsError, UsageError
from seed_core.images import from_pil, load_image, save_png, to_pil

IMAGES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEOS = (".mp4", ".mov", ".mkv", ".webm", ".avi")


def _av(path: Path) -> Any:
    try:
        import av
    except ImportError:
        raise UsageError(
            f"{path}: video files need PyAV: pip install 'seed-video[io]' (or give a folder of frames)"
        ) from None
    return av


def read_video(path: Path) -> tuple[torch.Tensor, float]:
    """A video file -> ((T, 3, H, W) in [0, 1], frames per second)."""
    av = _av(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or 24)
            frames = [torch.from_numpy(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    except (av.FFmpegError, IndexError) as exc:
        raise UsageError(f"{path}: not a readable video ({exc})") from None
    if not frames:
        raise UsageError(f"{path}: the video has no frames")
    return torch.stack(frames).permute(0, 3, 1, 2).float() / 255, fps


def write_video(
    frames: torch.Tensor, path: Path, fps: float, metadata: dict[str, Any], *, force: bool = False
) -> Path:
    """(T, 3, H, W) in [0, 1] -> an H.264 file, written atomically."""
    import json
    from fractions import Fraction

    from seed_core.files import atomic_path

    av = _av(path)
    pixels = (frames.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    with atomic_path(path, force=force) as tmp:
        with av.open(str(tmp), "w", format=path.suffix.lstrip(".").replace("mkv", "matroska")) as container:
            container.metadata["comment"] = json.dumps(metadata, sort_keys=True, default=str)
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = pixels.shape[2], pixels.shape[1], "yuv420p"
            stream.options = {"crf": "17"}
            for frame in pixels:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return path


def read_frames(path: Path) -> torch.Tensor:
    """An image file (one frame), a folder of frames (sorted by name) or a video -> (T, 3, H, W) in [0, 1]."""
    path = Path(path)
    if path.suffix.lower() in VIDEOS:
        return read_video(path)[0]
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
    frames: torch.Tensor, out: Path, metadata: dict[str, Any], *, force: bool = False, fps: float = 24.0
) -> list[Path]:
    """One frame to `out` if it names an image file, a video if it names a video file, else frames
    `00000.png`, ... into the folder `out`."""
    out = Path(out)
    if out.suffix.lower() in VIDEOS:
        return [write_video(frames, out, fps, metadata, force=force)]
    if out.suffix.lower() in IMAGES:
        if frames.shape[0] != 1:
            raise UsageError(f"{out}: {frames.shape[0]} frames need an output folder, not an image file")
        return [save_png(to_pil(frames[0]), out, metadata, force=force)]
    if out.exists() and any(out.iterdir()) and not force:
        raise OutputExistsError(f"{out} exists and is not empty; pass --force to overwrite its frames")
    out.mkdir(parents=True, exist_ok=True)
    return [
        save_png(to_pil(frame), out / f"{i:05d}.png", {**metadata, "frame": i}, force=True)
        for i, frame in enumerate(frames)
    ]
