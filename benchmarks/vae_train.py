"""Reconstruction PSNR of the tiny autoencoders after a fixed CPU training budget, with and without the
residual space-to-channel shortcuts.

    uv run python benchmarks/vae_train.py [--steps 400]

Trains on random disc images (seed_vae.synthetic), evaluates on 16 held-out 64x64 images; a flat
mean-colour image is the floor any autoencoder must beat.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from seed_vae import AutoencoderConfig
from seed_vae.synthetic import fit_on_discs, held_out_psnr

RUNS = [  # name, config, batch, train size, lr
    ("f8 (tiny-f8)", AutoencoderConfig.preset("tiny-f8"), 16, 32, 2e-3),
    ("f32 (tiny-f32)", AutoencoderConfig.preset("tiny-f32"), 8, 64, 1e-3),
    ("f32 without shortcuts", AutoencoderConfig.preset("tiny-f32", shortcuts=False), 8, 64, 1e-3),
    ("f32 plain latent (no KL)", AutoencoderConfig.preset("tiny-f32", kl=False), 8, 64, 1e-3),
]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "vae_train.json")
    args = parser.parse_args()
    rows = []
    print(f"{'autoencoder':<26} {'steps':>5} {'PSNR dB':>8} {'seconds':>8}")
    for name, cfg, batch, size, lr in RUNS:
        start = time.perf_counter()
        vae = fit_on_discs(cfg, steps=args.steps, batch=batch, size=size, lr=lr)
        seconds = time.perf_counter() - start
        score, floor = held_out_psnr(vae)
        rows.append(
            {
                "name": name,
                "steps": args.steps,
                "psnr_db": score,
                "seconds": seconds,
                "batch": batch,
                "train_size": size,
                "lr": lr,
            }
        )
        print(f"{name:<26} {args.steps:>5} {score:>8.2f} {seconds:>8.1f}", flush=True)
    print(f"{'flat mean colour (floor)':<26} {'-':>5} {floor:>8.2f} {'-':>8}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "benchmark": "vae_train",
                "floor_psnr_db": floor,
                "rows": rows,
                "threads": torch.get_num_threads(),
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
