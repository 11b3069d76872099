"""SeedVR2 restoration speed and memory (`seed restore`).

CPU (default): seedvr2-mini on 480p (854x480) and 1080p (1920x1080) clips of moving shapes, frames per
second and peak memory per phase (encode, DiT, decode), whole-frame VAE vs `--tile 64` vs `--vae-chunk 1`.
Each configuration runs in its own process, so the peak resident size is its own.

GPU (`--gpu`, on a CUDA machine): the SeedVR2-3B architecture with random weights on a 720p (1280x720)
21-frame chunk in bf16, with all blocks on the GPU, with `--offload-blocks 16`, and the small-GPU settings
(every block offloaded, VAE chunks of 1 latent frame, tiles) run under a memory cap
(`torch.cuda.set_per_process_memory_fraction`) that makes the card behave as an 8 / 12 GiB one; peak GPU
memory per phase and seconds per chunk; the same settings' estimates are rows of `--estimate`. Random
weights restore nothing, but time and memory are those of the real model.

Estimate (`--estimate`, any machine, no GPU): the peak GPU memory per phase of the 3B and 7B at 720p and
1080p, 21 frames in one batch, bf16, for a ladder of memory settings, counted on fake tensors
(`seed_video.memory.estimate_restore`; tensors only, no kernel workspaces).

    uv run python benchmarks/restore.py [--frames 5] [--sizes 480p 1080p]
    uv run python benchmarks/restore.py --estimate [--sizes 720p 1080p]
    python benchmarks/restore.py --gpu                      # PYTHONPATH=packages/*/src on the GPU machine

Prints a table and writes benchmarks/results/restore[-gpu|-memory].json (or --json PATH).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

SIZES = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
CPU_VARIANTS: dict[str, dict[str, Any]] = {
    "whole": {"vae_chunk": 0},
    "tile 64": {"tile": 64},
    "vae-chunk 1": {"vae_chunk": 1},
}


def shapes_clip(frames: int, width: int, height: int) -> torch.Tensor:
    """(T, 3, H, W) in [0, 1]: a moving shapes clip rendered at the size, then degraded (blur, 4x down,
    noise, JPEG) and upscaled back, as the restorer would see it."""
    import random

    from seed_mini import clips, world

    rng = random.Random(7)
    scenes = clips.sample_clip(rng, frames)
    clean = world.render_batch(scenes, (width, height))
    return clips.degrade(clean, clips.Degradation(1.0, 4, 0.02, 50), torch.Generator().manual_seed(0))


def run_one(config: dict[str, Any]) -> dict[str, Any]:
    """One restore in this process: seconds and the pipeline's peaks per phase."""
    from seed_core.pipeline import load

    device = config["device"]
    offload = config.get("offload_blocks", 0)
    if config.get("cap_gib"):  # behave as a card of this size: allocations beyond it fail
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(config["cap_gib"] * 2**30 / total, device)
    if config["model"] == "seedvr2-3b-random":
        pipe = random_3b(device="cpu" if offload else device)
    else:
        pipe = load(config["model"], device="cpu" if offload else device, dtype=config["dtype"])
    if offload or device != "cpu":
        pipe.place(device, offload)
    width, height = SIZES[config["size"]]
    frames = shapes_clip(config["frames"], width, height)
    kwargs = {k: config[k] for k in ("tile", "vae_chunk") if k in config}
    resolution = f"{width}x{height}"
    if device.startswith("cuda"):  # warm up kernels and the allocator on a short clip
        pipe.restore_frames(frames[:1], resolution=resolution, batch_frames=1, **kwargs)
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = pipe.restore_frames(frames, resolution=resolution, batch_frames=config["frames"], **kwargs)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        **config,
        "output": list(out.shape),
        "seconds": seconds,
        "fps": config["frames"] / seconds,
        "peaks_mib": pipe.peaks,
    }


def random_3b(device: str) -> Any:
    """SeedVR2-3B with random weights in bf16, built on the meta device and materialised on `device`."""
    from seed_core.specs import ModelSpec
    from seed_core.weights import build_on_meta
    from seed_vae.video import CausalVideoVAE, VideoVAEConfig
    from seed_video.config import NaDiTConfig
    from seed_video.nadit import NaDiT
    from seed_video.pipeline import SeedVR2Pipeline

    def materialise(module: torch.nn.Module) -> torch.nn.Module:
        module = module.to_empty(device=device).to(torch.bfloat16)
        with torch.no_grad():
            for p in module.parameters():
                p.normal_(0, 0.02)
        return module.eval()

    dit = materialise(build_on_meta(lambda: NaDiT(NaDiTConfig.preset("3b"))))
    vae = materialise(build_on_meta(lambda: CausalVideoVAE(VideoVAEConfig.preset("seedvr2"))))
    emb = torch.randn(58, 5120, device=device)
    spec = ModelSpec("seedvr2-3b", "seedvr2", ("restore",), lambda s, o: None)
    return SeedVR2Pipeline(spec, dit, vae, emb, device)


# the memory ladder of `--estimate` (and of the capped GPU rows): each adds one saving to the one before
LADDER: list[tuple[str, dict[str, Any]]] = [
    ("whole", {"vae_chunk": 0}),
    ("vae-chunk 2", {"vae_chunk": 2}),
    ("vae-chunk 1", {"vae_chunk": 1}),
    ("+ offload all", {"vae_chunk": 1, "offload_blocks": -1}),
    ("+ tile 64", {"vae_chunk": 1, "offload_blocks": -1, "tile": 64}),
    ("+ tile 32", {"vae_chunk": 1, "offload_blocks": -1, "tile": 32}),
]


def estimate(preset: str, size: str, frames: int, options: dict[str, Any]) -> dict[str, float]:
    """Estimated peak MiB per phase for the official `preset` ("3b", "7b") in bf16."""
    from seed_vae.video import VideoVAEConfig
    from seed_video.config import NaDiTConfig
    from seed_video.memory import RestoreSettings, estimate_restore

    cfg = NaDiTConfig.preset(preset)
    options = {**options}
    if options.get("offload_blocks") == -1:
        options["offload_blocks"] = cfg.layers
    width, height = SIZES[size]
    settings = RestoreSettings(frames, height // 16 * 16, width // 16 * 16, "bfloat16", **options)
    return estimate_restore(cfg, VideoVAEConfig.preset("seedvr2"), settings)


def estimate_main(sizes: list[str], frames: int, out: Path) -> int:
    rows = []
    print(f"{'model':<6} {'size':<6} {'settings':<15} peak MiB encode / dit / decode   weights   (estimated)")
    for preset in ("3b", "7b"):
        for size in sizes:
            for name, options in LADDER:
                start = time.perf_counter()
                peaks = estimate(preset, size, frames, options)
                seconds = time.perf_counter() - start
                row = {"model": f"seedvr2-{preset}", "size": size, "frames": frames, "settings": name}
                rows.append({**row, **options, "peaks_mib": peaks, "seconds_to_count": seconds})
                line = " / ".join(f"{peaks[k]:>7,.0f}" for k in ("encode", "dit", "decode"))
                print(f"{preset:<6} {size:<6} {name:<15} {line}   {peaks['weights']:>7,.0f}")
                out.write_text(json.dumps({"machine": "fake tensors", "dtype": "bfloat16", "rows": rows},
                                          indent=2) + "\n")  # fmt: skip
    print(f"wrote {out}")
    return 0


def child(config: dict[str, Any]) -> dict[str, Any]:
    """Run `config` in a fresh process (its own peak memory)."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(config)], capture_output=True, text=True
    )
    if proc.returncode:
        return {**config, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--sizes", nargs="+", default=["480p", "1080p"], choices=list(SIZES))
    parser.add_argument("--model", default="seedvr2-mini")
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--estimate", action="store_true", help="count GPU memory on fake tensors")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(json.loads(args.child))))
        return 0
    if args.estimate:
        sizes = args.sizes if args.sizes != parser.get_default("sizes") else ["720p", "1080p"]
        frames = 21 if args.frames == parser.get_default("frames") else args.frames
        out = args.json or Path(__file__).parent / "results" / "restore-memory.json"
        return estimate_main(sizes, frames, out)
    if args.gpu:
        # session 11 (H200) measured the first two before the VAE's streaming fix (kept frames were views
        # that pinned each chunk's input: 61 GB to decode); the capped rows show the small-GPU settings fit
        configs = [
            {"model": "seedvr2-3b-random", "device": "cuda", "dtype": "bfloat16", "size": "720p",
             "frames": 21, "offload_blocks": n, **extra}
            for n, extra in (
                # the small-GPU rows first: they are what no GPU run has shown yet
                (32, {"vae_chunk": 1, "tile": 64, "cap_gib": 8}),
                (32, {"vae_chunk": 1, "tile": 32, "cap_gib": 8}),
                (0, {"vae_chunk": 1}), (32, {"vae_chunk": 1}), (0, {"vae_chunk": 2}), (16, {"vae_chunk": 2}),
            )
        ]  # fmt: skip
    else:
        configs = [
            {"model": args.model, "device": "cpu", "dtype": "float32", "size": size, "frames": args.frames,
             "variant": name, **variant}
            for size in args.sizes
            for name, variant in CPU_VARIANTS.items()
        ]  # fmt: skip
    rows = []
    header = f"{'model':<18} {'size':<6} {'variant':<12} {'frames':>6} {'s':>8} {'fps':>7}  peak MiB"
    header += " (encode/dit/decode)"
    print(header)
    machine = torch.cuda.get_device_name() if args.gpu and torch.cuda.is_available() else "cpu"
    out = args.json or Path(__file__).parent / "results" / (
        "restore-gpu.json" if args.gpu else "restore.json"
    )
    for config in configs:
        row = child(config)
        rows.append(row)
        # written after every row: a run cut off by its time limit keeps what it measured
        result = {"machine": machine, "threads": torch.get_num_threads(), "rows": rows}
        out.write_text(json.dumps(result, indent=2) + "\n")
        variant = row.get("variant") or f"offload {row.get('offload_blocks', 0)}" + "".join(
            f" {key.replace('_', '-')} {row[key]}" for key in ("vae_chunk", "tile", "cap_gib") if row.get(key)
        )
        if "error" in row:
            print(f"{row['model']:<18} {row['size']:<6} {variant:<12} error: {row['error']}")
            continue
        peaks = "/".join(f"{row['peaks_mib'].get(k, 0):,.0f}" for k in ("encode", "dit", "decode"))
        print(
            f"{row['model']:<18} {row['size']:<6} {variant:<12} {row['frames']:>6} "
            f"{row['seconds']:>8.2f} {row['fps']:>7.3f}  {peaks}"
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
