"""How well an autoencoder gives back fresh scenes of the shapes world: the share of scenes the analyzer reads
back exactly (`metrics.scene_match`), of objects found in place, and the mean PSNR. A decoder that cannot
redraw a scene caps every model that samples through it.

    uv run python benchmarks/vae_roundtrip.py packages/seed-mini/src/seed_mini/weights/seedream-mini \
        [--scenes 200] [--size 64] [--objects N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

import torch

from seed_core.files import atomic_write_bytes
from seed_mini import analyzer, metrics, world
from seed_mini.train import load_vae


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("vae", type=Path, help="an autoencoder run (vae.json) or a model directory")
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--objects", type=int, help="objects a scene (default: the world's 1-4)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    vae = load_vae(args.vae).eval()
    rng = random.Random(4242)
    exact = found = total = 0
    psnrs = []
    for _ in range(args.scenes):
        scene = world.sample_scene(rng, args.objects)
        x = world.render(scene, args.size)
        with torch.no_grad():
            y = (vae.decode(vae.encode(x[None] * 2 - 1))[0].clamp(-1, 1) + 1) / 2
        psnrs.append(-10 * math.log10(((y - x) ** 2).mean().item() + 1e-12))
        seen = analyzer.analyze(y)
        exact += metrics.scene_match(scene, seen)
        total += len(scene.objects)
        found += sum(metrics.found_in_place(o, seen) for o in scene.objects)
    result = {
        "vae": str(args.vae), "scenes": args.scenes, "size": args.size, "objects": args.objects,
        "scenes_exact": exact / args.scenes, "objects_found": found / total,
        "psnr_db": sum(psnrs) / len(psnrs),
    }  # fmt: skip
    print("| autoencoder | size | scenes exact | objects found | PSNR |\n|---|---|---|---|---|")
    print(
        f"| {args.vae} | {args.size} | {result['scenes_exact']:.1%} | {result['objects_found']:.1%} "
        f"| {result['psnr_db']:.1f} dB |"
    )
    if args.json:
        atomic_write_bytes(args.json, (json.dumps(result, indent=2) + "\n").encode(), force=True)


if __name__ == "__main__":
    main()
