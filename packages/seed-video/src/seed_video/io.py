"""Frames in and out as (T, 3, H, W) in [0, 1]: an image, a folder of numbered frames (PNG / JPEG), or a
video file (mp4, mov, mkv, webm, avi) through PyAV (`pip install 'seed-video[io]'`), whose frame rate is
kept. Videos are written as H.264 (yuv420p, CRF 17; VP9 for WebM) with the restore's parameters in the
container's comment, and the source's audio streams copied over unchanged (no re-encoding) when the
output container can hold their codec; frames carry the parameters in their PNG metadata (`seed info`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from seed_core.errors import UsageError
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
    frames: torch.Tensor,
    path: Path,
    fps: float,
    metadata: dict[str, Any],
    *,
    force: bool = False,
    audio_from: Path | None = None,
) -> Path:
    """(T, 3, H, W) in [0, 1] -> an H.264 file, written atomically; `audio_from`: a video whose audio
    streams are copied into it."""
    import json
    from contextlib import ExitStack
    from fractions import Fraction

    from seed_core.files import atomic_path

    av = _av(path)
    pixels = (frames.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    with atomic_path(path, force=force) as tmp, ExitStack() as stack:
        fmt = path.suffix.lstrip(".").replace("mkv", "matroska")
        container = stack.enter_context(av.open(str(tmp), "w", format=fmt))
        container.metadata["comment"] = json.dumps(metadata, sort_keys=True, default=str)
        codec = "libvpx-vp9" if fmt == "webm" else "libx264"  # WebM holds VP8 / VP9 / AV1 only
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = pixels.shape[2], pixels.shape[1], "yuv420p"
        stream.options = {"crf": "17"} if codec == "libx264" else {"crf": "20", "b": "0"}
        # every stream must exist before the first packet writes the header
        source = stack.enter_context(av.open(str(audio_from))) if audio_from is not None else None
        audio = _audio_streams(source, container) if source is not None else {}
        for frame in pixels:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio:  # after the video: the muxer interleaves by timestamp
            for packet in source.demux([source.streams[i] for i in audio]):
                if packet.dts is None:  # the demuxer's end-of-stream marker
                    continue
                packet.stream = audio[packet.stream.index]
                container.mux(packet)
    return path


def _audio_streams(source: Any, container: Any) -> dict[int, Any]:
    """Output streams copying `source`'s audio streams (codec unchanged), by source stream index; a codec
    the output format cannot hold is skipped with a warning."""
    import warnings

    import av

    streams = {}
    for audio in source.streams.audio:
        name = audio.codec_context.name
        if container.format.name == "webm" and name not in ("opus", "vorbis"):
            warnings.warn(f"the source's {name} audio cannot go in WebM; it is not copied", stacklevel=3)
            continue
        try:
            streams[audio.index] = container.add_stream_from_template(audio)
        except (av.FFmpegError, ValueError) as exc:
            warnings.warn(f"audio stream {audio.index} not copied ({exc})", stacklevel=3)
    return streams


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


def check_output(out: Path, force: bool = False) -> None:
    """Refuse, before any work, an output `write_frames` cannot take: an unknown extension (a typo must
    not become a folder of frames), or an existing file or non-empty folder without `force`."""
    from seed_core.files import check_writable

    suffix = out.suffix.lower()
    if suffix and suffix not in IMAGES + VIDEOS:
        raise UsageError(
            f"{out}: unknown extension '{out.suffix}'; name an image ({', '.join(IMAGES)}), a video "
            f"({', '.join(VIDEOS)}) or a folder for frames (no extension)"
        )
    if suffix:
        check_writable(out, force)
    elif out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; give a folder name for the frames")
    elif out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(f"{out} exists and is not empty; pass --force to overwrite it")


def write_frames(
    frames: torch.Tensor,
    out: Path,
    metadata: dict[str, Any],
    *,
    force: bool = False,
    fps: float = 24.0,
    audio_from: Path | None = None,
) -> list[Path]:
    """One frame to `out` if it names an image file, a video if it names a video file (with the audio of
    `audio_from`, a video), else frames `00000.png`, ... into the folder `out`."""
    out = Path(out)
    if out.suffix.lower() in VIDEOS:
        return [write_video(frames, out, fps, metadata, force=force, audio_from=audio_from)]
    if out.suffix.lower() in IMAGES:
        if frames.shape[0] != 1:
            raise UsageError(f"{out}: {frames.shape[0]} frames need an output folder, not an image file")
        return [save_png(to_pil(frames[0]), out, metadata, force=force)]
    from seed_core.files import atomic_dir

    with atomic_dir(out, force=force) as tmp:  # all frames appear at once, or none
        for i, frame in enumerate(frames):
            save_png(to_pil(frame), tmp / f"{i:05d}.png", {**metadata, "frame": i}, force=True)
    return [out / f"{i:05d}.png" for i in range(frames.shape[0])]
