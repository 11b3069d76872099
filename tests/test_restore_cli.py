"""`seed restore` end to end on the tiny random SeedVR2, and its refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from seed_core.images import read_metadata


def _frames(folder: Path, count: int, size: tuple[int, int] = (56, 40)) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype("uint8")).save(
            folder / f"{i:03d}.png"
        )
    return folder


def test_restore_a_folder_and_an_image(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = _frames(tmp_path / "in", 6)
    out = tmp_path / "out"
    args = ["restore", str(src), "-m", "seedvr2-tiny-random", "--resolution", "48", "--overlap", "2"]
    result = run(*args, "-o", str(out))
    assert result.exit_code == 0, result.output
    written = sorted(out.iterdir())
    assert len(written) == 6 and Image.open(written[0]).size == (64, 48)
    meta = read_metadata(written[3])
    assert meta["task"] == "restore" and meta["frame"] == 3 and meta["settings"]["overlap"] == 2

    again = run(*args, "-o", str(out))
    assert again.exit_code != 0 and "--force" in again.output
    image = run(
        "restore",
        str(src / "000.png"),
        "-m",
        "seedvr2-tiny-random",
        "--resolution",
        "32x32",
        "-o",
        str(tmp_path / "x.png"),
    )
    assert image.exit_code == 0, image.output
    assert Image.open(tmp_path / "x.png").size == (32, 32)


def test_refusals(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = _frames(tmp_path / "in", 2)
    base = ["restore", str(src), "-o", str(tmp_path / "o")]
    video = run("restore", str(tmp_path / "clip.mp4"), "-m", "seedvr2-tiny-random", "-o", str(tmp_path / "o"))
    assert video.exit_code == 2 and "clip.mp4: no such file" in video.output
    frames = run(*base, "-m", "seedvr2-tiny-random", "--batch-frames", "4")
    assert frames.exit_code == 2 and "4n + 1" in frames.output
    wrong = run(*base, "-m", "seedream-tiny-random")
    assert wrong.exit_code == 2 and "does not restore video" in wrong.output
    weights = run(*base, "-m", "seedvr2-7b")
    assert weights.exit_code != 0 and "ships no weights" in weights.output
    missing = run(*base, "-m", "seedvr2-3b", "--weights", str(tmp_path / "nowhere"))
    assert missing.exit_code == 2 and "no such file or directory" in missing.output
    empty = tmp_path / "empty"
    empty.mkdir()
    nofiles = run(*base, "-m", "seedvr2-3b", "--weights", str(empty))
    assert nofiles.exit_code != 0 and "no DiT file (seedvr2_ema_3b" in nofiles.output
    for result in (video, frames, wrong, weights, missing, nofiles):
        assert len(result.output.strip().splitlines()) == 1


def test_restore_a_video_keeps_its_frame_rate(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import json

    import av
    import torch

    from seed_video.io import read_video, write_video

    write_video(torch.rand(6, 3, 40, 56), tmp_path / "in.mp4", 12.0, {})
    out = tmp_path / "out.mp4"
    args = ["restore", str(tmp_path / "in.mp4"), "-m", "seedvr2-tiny-random", "--resolution", "48"]
    result = run(*args, "-o", str(out))
    assert result.exit_code == 0, result.output
    frames, fps = read_video(out)
    assert frames.shape == (6, 3, 48, 64) and fps == 12.0
    with av.open(str(out)) as container:
        assert json.loads(container.metadata["comment"])["settings"]["resolution"] == "48"
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    bad = run(
        "restore", str(tmp_path / "bad.mp4"), "-m", "seedvr2-tiny-random", "-o", str(tmp_path / "o.mp4")
    )
    assert bad.exit_code == 2 and "not a readable video" in bad.output


def _video_with_audio(path: Path, frames: int = 6, fps: int = 12) -> None:
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 56, 40, "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        for i in range(frames):
            image = np.full((40, 56, 3), 30 * i, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        tone = np.sin(np.arange(8000, dtype=np.float32) / 16000 * 2 * np.pi * 440)[None]
        chunk = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        chunk.sample_rate = 16000
        for packet in [*audio.encode(chunk), *audio.encode()]:
            container.mux(packet)


def _audio_packets(path: Path) -> list[bytes]:
    import av

    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(audio=0) if p.dts is not None]


def test_restore_copies_the_audio_unchanged(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _video_with_audio(tmp_path / "in.mp4")
    out = tmp_path / "out.mp4"
    result = run(
        "restore", str(tmp_path / "in.mp4"), "-m", "seedvr2-tiny-random", "--resolution", "32", "-o", str(out)
    )
    assert result.exit_code == 0, result.output
    source = _audio_packets(tmp_path / "in.mp4")
    assert source and _audio_packets(out) == source  # the same AAC packets, not re-encoded


def test_an_interrupted_restore_leaves_no_output(run, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A failure while writing the 3rd frame (or the 3rd video frame): nothing under the final name,
    no temporary files left, and an existing output folder is kept as it was."""
    from seed_video import io

    calls = {"n": 0}
    real_save = io.save_png

    def failing_save(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_save(*args, **kwargs)

    src = _frames(tmp_path / "in", 5)
    monkeypatch.setattr(io, "save_png", failing_save)
    args = ["restore", str(src), "-m", "seedvr2-tiny-random", "--resolution", "32"]
    run(*args, "-o", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    old = tmp_path / "old"
    old.mkdir()
    (old / "keep.png").write_bytes(b"x")
    calls["n"] = 0
    run(*args, "-o", str(old), "--force")
    assert [p.name for p in old.iterdir()] == ["keep.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "old"]  # no temporary folders

    import av

    real_frame = av.VideoFrame.from_ndarray
    calls["n"] = 0

    def failing_frame(*a, **k):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_frame(*a, **k)

    monkeypatch.setattr(av.VideoFrame, "from_ndarray", failing_frame)
    run(*args, "-o", str(tmp_path / "out.mp4"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "old"]


def test_a_resolution_the_model_cannot_take(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = _frames(tmp_path / "in", 1)
    for value, message in (("8", "at least 16 x 16"), ("wide", "give the short side")):
        result = run("restore", str(src), "-m", "seedvr2-tiny-random", "--resolution", value, "-o", "x.png")
        assert result.exit_code == 2 and message in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_restore_with_an_accelerator(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = _frames(tmp_path / "in", 1)
    args = ["restore", str(src), "-m", "seedvr2-tiny-random", "--resolution", "32"]
    result = run(*args, "--accel", "int8", "-o", str(tmp_path / "q.png"))
    assert result.exit_code == 0, result.output
    assert [a["name"] for a in read_metadata(tmp_path / "q.png")["accelerators"]] == ["int8"]
    bad = run(*args, "--accel", "nonsense", "-o", str(tmp_path / "x.png"))
    assert bad.exit_code != 0 and len(bad.output.strip().splitlines()) == 1 and "nonsense" in bad.output


def test_estimate_memory_needs_no_weights_and_no_output(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = _frames(tmp_path / "in", 5)

    def decode_mib(*extra: str) -> float:
        result = run("restore", str(src), "-m", "seedvr2-tiny-random", "--resolution", "128",
                     "--estimate-memory", *extra)  # fmt: skip
        assert result.exit_code == 0, result.output
        row = next(line for line in result.output.splitlines() if "decode" in line)
        return float(row.split()[-2].replace(",", ""))

    assert decode_mib("--tile", "8", "--vae-chunk", "1") < 0.5 * decode_mib("--vae-chunk", "0")
    assert not (tmp_path / "o").exists()
    # the official 7B, whose weights are not here: built on fake tensors, 8.2 billion bf16 values
    big = run("restore", str(src), "-m", "seedvr2-7b", "--resolution", "128", "--dtype", "bfloat16",
              "--estimate-memory")  # fmt: skip
    assert big.exit_code == 0, big.output
    held = next(line for line in big.output.splitlines() if "weights held" in line)
    assert 16_150 < float(held.split()[-2].replace(",", "")) < 16_250  # (7B DiT + VAE) x 2 bytes: 16,194 MiB
    bad = run("restore", str(src), "-m", "seedvr2-tiny-random", "--estimate-memory", "--offload-blocks", "9")
    assert bad.exit_code == 2 and "--offload-blocks 9" in bad.output


def test_max_memory_chooses_savings_or_refuses(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = _frames(tmp_path / "in", 1)  # one frame: quickest to count
    base = ["restore", str(src), "-m", "seedvr2-tiny-random", "--resolution", "256"]
    full = run(*base, "--vae-chunk", "0", "--estimate-memory")
    need = max(
        float(line.split()[-2].replace(",", ""))
        for line in full.output.splitlines()
        if line.split()[:2] in (["│", "encode"], ["│", "dit"], ["│", "decode"])
    )
    budget = need / 1024  # GiB: with the workspace margin the whole batch no longer fits
    out = tmp_path / "o"
    result = run(*base, "--vae-chunk", "0", "--max-memory", f"{budget:.6f}", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "--max-memory" in result.output and "--tile" in result.output
    settings = read_metadata(sorted(out.iterdir())[0])["settings"]
    assert settings["tile"] is not None and settings["offload_blocks"] == 3  # every block of the tiny DiT
    tiny = run(*base, "--max-memory", "0.001", "-o", str(tmp_path / "p"))
    assert tiny.exit_code == 2 and "lower --batch-frames or --resolution" in tiny.output
    assert not (tmp_path / "p").exists()
