"""Prototype (session 26): PARO with one density per refine step at the same mean budget.

At 256 px seedream-mini refines a 64-px draft in two steps at full size (t = 0.5 and t = 0.387), and PARO
runs on those two. Both fall in the plan's timestep group 2 of 4, so `--accel paro:density=D` gives both
the same masks. This script gives the second step (the one that writes the output) its own density by
patching the plan's group lookup and masks for the run, and measures `seed eval`'s text-to-image suites
at 256 px: `--first 0.2 --last 0.4` spends what density 0.3 spends on the two steps.

    uv run python benchmarks/paro_schedule.py --first 0.2 --last 0.4 [--seed S] \
        [--json benchmarks/results/paro-schedule.json]

Not a shipped option yet: if it holds, the plan should carry one density per step group.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from seed_attn import paro
from seed_mini.evaluate import evaluate

LAST_STEP_BELOW = 0.45  # flow time between the two refine steps (0.5 and 0.387 at 20 steps, shift 3)
LAST_GROUP = 3  # a group the refine never visits otherwise: the last step's masks go there


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--first", type=float, required=True, help="density of the first refine step")
    parser.add_argument("--last", type=float, required=True, help="density of the last refine step")
    parser.add_argument("--bits", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/paro-schedule.json"))
    args = parser.parse_args()

    masks_of, group_of = paro.ParoPlan.block_masks, paro.ParoPlan.group_of
    visits: dict[float, int] = {}

    def block_masks(self: paro.ParoPlan, density: float, reorder: bool = True) -> torch.Tensor:
        masks = masks_of(self, args.first, reorder)  # (groups, layers, heads, n, n)
        masks[LAST_GROUP] = masks_of(self, args.last, reorder)[LAST_GROUP]
        return masks

    def group(self: paro.ParoPlan, t: float) -> int:
        g = LAST_GROUP if t < LAST_STEP_BELOW else group_of(self, t)
        visits[round(float(t), 3)] = g
        return g

    paro.ParoPlan.block_masks = block_masks  # type: ignore[method-assign]
    paro.ParoPlan.group_of = group  # type: ignore[method-assign]
    accel = [f"paro:density={(args.first + args.last) / 2},bits={args.bits}"]
    result: dict[str, Any] = evaluate("seedream-mini", accel, size=256, seed=args.seed)
    acc = " ".join(f"{k} {v:.1%}" for k, v in result["prompt_accuracy"].items())
    fd = result["frechet"]["distance"]
    print(f"first {args.first} last {args.last} seed {args.seed}: {acc}  FD {fd:.1f}")
    print(f"refine steps (t: group): {visits}")
    record = {"first": args.first, "last": args.last, "bits": args.bits, "seed": args.seed, "visits": visits}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({**record, **result}, indent=2, default=str) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
