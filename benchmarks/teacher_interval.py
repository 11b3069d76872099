"""The distillation teacher's cost in a batch that straddles its guidance interval (the shipped
seedream-mini is guided only for t <= 0.9): each row running its own branches (`select_conditions`)
against every branch on every row, then the right one kept (a target without `select_conditions`). Model
already loaded, in one run on one machine: the two ways alternate call by call, medians reported.

    uv run python benchmarks/teacher_interval.py [--model seedream-mini] [--batch 32] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from seed_core.pipeline import load


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="seedream-mini")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/teacher_interval.json"))
    args = parser.parse_args()
    target = load(args.model).distill_target(["a red circle left of a blue square", "three green stars"])
    gen = torch.Generator().manual_seed(0)
    cond = target.sample_conditions(args.batch, gen)
    x = target.sample_noise(args.batch, gen)
    t = torch.rand(args.batch, generator=gen)  # uniform noise levels: about 10% above 0.9
    low, high = target.guidance_interval
    outside = int(((t < low) | (t > high)).sum())

    def every_branch(_cond: object, _rows: torch.Tensor) -> object:  # as a target without the method
        raise NotImplementedError

    ways = {"own branches per row": target.select_conditions, "every branch on every row": every_branch}
    times: dict[str, list[float]] = {name: [] for name in ways}
    outputs = {}
    with torch.no_grad():
        for i in range(args.repeats + 1):  # the first round warms up
            for name, select in ways.items():
                target.select_conditions = select  # type: ignore[method-assign]
                start = time.perf_counter()
                outputs[name] = target.teacher_velocity(x, t, cond, target.default_guidance)
                if i:
                    times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(seconds) for name, seconds in times.items()}
    own, every = "own branches per row", "every branch on every row"
    speedup = median[every] / median[own]
    difference = float((outputs[own] - outputs[every]).abs().max())
    print(f"batch {args.batch}, {outside} rows above the interval, interval {low:g}-{high:g}")
    print(f"{'teacher call':<28} {'median s':>9}")
    for name in ways:
        print(f"{name:<28} {median[name]:>9.4f}")
    print(f"speed-up {speedup:.2f}x; largest difference between the two {difference:.2e}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "model": args.model, "batch": args.batch, "rows_outside": outside, "interval": [low, high],
        "median_seconds": median, "speedup": speedup, "max_abs_difference": difference,
        "threads": torch.get_num_threads(),
    }  # fmt: skip
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
