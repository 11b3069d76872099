"""Generation time with classifier-free guidance at every step against guidance only inside an interval of
noise levels (the other steps run the DiT once, not once per branch), model already loaded, in one run
on one machine: the two settings alternate image by image, so a machine that slows down slows both.

    uv run python benchmarks/guidance_interval.py [--model seedream-mini] [--interval 0,0.9] [--sizes 64 256]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from seed_core.pipeline import load
from seed_core.requests import GenerateRequest, parse_interval

PROMPT = "a blue square left of a green star"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="seedream-mini")
    parser.add_argument("--interval", default="0,0.9", help="LOW,HIGH: the guided noise levels")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/guidance_interval.json"))
    args = parser.parse_args()
    interval = parse_interval(args.interval, "--interval")
    pipeline = load(args.model)
    rows = []
    for size in args.sizes:
        times: dict[str, list[float]] = {"every step": [], args.interval: []}
        calls: dict[str, int] = {}
        for i in range(args.repeats + 1):  # the first round warms up
            for name, span in (("every step", (0.0, 1.0)), (args.interval, interval)):
                request = GenerateRequest(PROMPT, seed=i, width=size, height=size, guidance_interval=span)
                rows_seen: list[int] = []
                hook = pipeline.dit.register_forward_hook(
                    lambda _m, a, _o, seen=rows_seen: seen.append(int(a[0].shape[0]))
                )
                start = time.perf_counter()
                pipeline.run(request)
                elapsed = time.perf_counter() - start
                hook.remove()
                calls[name] = sum(rows_seen)  # images the DiT ran, summed over its calls
                if i:
                    times[name].append(elapsed)
        base = statistics.median(times["every step"])
        for name, values in times.items():
            seconds = statistics.median(values)
            rows.append(
                {
                    "size": size,
                    "guidance": name,
                    "seconds": seconds,
                    "dit_rows": calls[name],
                    "speedup": base / seconds,
                }
            )
    print(f"{'size':>5} {'guided at':>12} {'per image (s)':>14} {'DiT rows':>9} {'speed-up':>9}")
    for r in rows:
        timing = f"{r['seconds']:>14.4f} {r['dit_rows']:>9} {r['speedup']:>8.2f}x"
        print(f"{r['size']:>5} {r['guidance']:>12} {timing}")
    payload = {
        "model": args.model,
        "interval": list(interval),
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2) + "\n")
    print(args.json)


if __name__ == "__main__":
    main()
