"""Tokens per image and the time of one DiT step at VAE factor 8 / 16 / 32, for 1024^2 and 2048^2 images.

    uv run python benchmarks/vae_tokens.py [--hidden 256] [--repeats 3] [--device cpu]

The DiT (width, depth, patch size 2) is the same for every factor; only the number of latent channels
entering it changes. Times are ratios within this run: compare factors, not machines.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from seed_dit.config import MMDiTConfig
from seed_dit.model import Conditioning, MMDiT

FACTORS = {8: 16, 16: 32, 32: 64}  # factor -> latent channels (the Seedream-scale presets' ratios)


def step_time(factor: int, side: int, hidden: int, repeats: int, device: str) -> tuple[int, float]:
    channels = FACTORS[factor]
    heads = hidden // 64
    cfg = MMDiTConfig(
        in_channels=channels,
        patch_size=2,
        hidden=hidden,
        heads=heads,
        double_blocks=1,
        single_blocks=1,
        text_dim=hidden,
        pooled_dim=hidden,
        rope_axes=(16, 24, 24),
    )
    model = MMDiT(cfg).to(device).eval()
    latent = side // factor
    x = torch.randn(1, channels, latent, latent, device=device)
    cond = Conditioning(
        torch.randn(1, 32, hidden, device=device),
        torch.ones(1, 32, dtype=torch.bool, device=device),
        torch.randn(1, hidden, device=device),
        torch.zeros(1, dtype=torch.long, device=device),
    )
    tokens = (latent // 2) ** 2
    times = []
    with torch.no_grad():
        model(x, torch.rand(1, device=device), cond)  # warm-up
        for _ in range(repeats):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(x, torch.rand(1, device=device), cond)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return tokens, statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "vae_tokens.json")
    args = parser.parse_args()
    rows = []
    print(f"{'image':>9} {'factor':>6} {'tokens':>7} {'step s':>8} {'tokens vs f8':>13} {'time vs f8':>11}")
    for side in (1024, 2048):
        base: tuple[int, float] | None = None
        for factor in (8, 16, 32):
            tokens, seconds = step_time(factor, side, args.hidden, args.repeats, args.device)
            base = base or (tokens, seconds)
            row = {
                "side": side,
                "factor": factor,
                "tokens": tokens,
                "step_s": seconds,
                "tokens_ratio": tokens / base[0],
                "time_ratio": seconds / base[1],
            }
            rows.append(row)
            print(
                f"{side:>4}x{side:<4} {factor:>6} {tokens:>7} {seconds:>8.4f} {row['tokens_ratio']:>13.4f} "
                f"{row['time_ratio']:>11.4f}",
                flush=True,
            )
    device = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu x{torch.get_num_threads()}"
    )
    report = {
        "benchmark": "vae_tokens",
        "device": device,
        "hidden": args.hidden,
        "patch_size": 2,
        "blocks": "1 dual + 1 single",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
