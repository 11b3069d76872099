"""Generation time of distilled students against their teacher, model already loaded, in one run on one
machine (ratios), and the wall time of the whole `seed generate` command for each.

    uv run python benchmarks/distill_speed.py [--model seedream-mini] [--accel tscd:steps=4 kd:steps=1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from seed_core.pipeline import load
from seed_core.requests import GenerateRequest


def per_image(model: str, accel: list[str], repeats: int) -> float:
    pipeline = load(model, accelerators=accel)
    pipeline.run(GenerateRequest("a red circle", seed=0))  # warm-up
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        pipeline.run(GenerateRequest("a blue square left of a green star", seed=i))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def command(model: str, accel: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            sys.executable,
            "-m",
            "seed_cli",
            "generate",
            "a red circle",
            "-m",
            model,
            "-o",
            f"{tmp}/x.png",
        ]
        for a in accel:
            args += ["--accel", a]
        start = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="seedream-mini")
    parser.add_argument("--accel", nargs="+", default=["tscd:steps=4", "kd:steps=1"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/distill_speed.json"))
    args = parser.parse_args()
    rows = []
    for accel in [None, *args.accel]:
        chosen = [accel] if accel else []
        seconds = per_image(args.model, chosen, args.repeats)
        wall = command(args.model, chosen)
        rows.append({"accel": accel or "teacher", "seconds": seconds, "command_seconds": wall})
    base = rows[0]["seconds"]
    print(f"{'':16} {'per image (s)':>14} {'speed-up':>9} {'seed generate (s)':>18}")
    for r in rows:
        r["speedup"] = base / r["seconds"]
        print(f"{r['accel']:16} {r['seconds']:>14.4f} {r['speedup']:>8.1f}x {r['command_seconds']:>18.2f}")
    payload = {"model": args.model, "threads": torch.get_num_threads(), "repeats": args.repeats, "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2) + "\n")
    print(args.json)


if __name__ == "__main__":
    main()
