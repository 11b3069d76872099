"""Edit success and preservation of a model by (text guidance, image guidance), per edit operation, scored
as `seed eval` scores its edit suite (`metrics.edit_success`, `metrics.preservation`). Choose on
a held-out suite (`--suite-seed 3031`), confirm on `seed eval`'s own (`--suite-seed 2027 --n 42`).

    uv run python benchmarks/edit_guidance.py --suite-seed 3031 --n 84 4:1.5 4:2.5 4:3.0 \
        [--model seedream-mini] [--accel kd:steps=1] [--seeds 0,10000,20000] [--json FILE]

The setting `default` samples at the model's (or student's) own guidance: with `--suite-seed 2027 --n 42
--seeds 0,10000,20000 default` this gives the edit rows of `seed eval --seeds 3`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from seed_core.files import atomic_write_bytes
from seed_core.images import save_png, to_pil
from seed_core.pipeline import load
from seed_core.requests import EditRequest
from seed_mini import metrics, world
from seed_mini.analyzer import analyze


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "settings", nargs="+", help="GUIDANCE:IMAGE_GUIDANCE pairs, e.g. 4:1.5 4:3.0, or 'default'"
    )
    parser.add_argument("--model", default="seedream-mini")
    parser.add_argument("--accel", action="append", default=[], help="an accelerator (repeatable)")
    parser.add_argument("--suite-seed", type=int, default=3031, help="edit suite seed (seed eval's is 2027)")
    parser.add_argument("--n", type=int, default=84, help="edits in the suite (an equal share per operation)")
    parser.add_argument(
        "--seeds", default="0", help="comma-separated base seeds (edit i samples at seed + i)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    try:
        pairs = [
            (None, None) if s == "default" else tuple(float(v) for v in s.split(":")) for s in args.settings
        ]
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error("give settings as GUIDANCE:IMAGE_GUIDANCE (4:3.0) and --seeds as integers (0,10000)")
    if any(len(p) != 2 for p in pairs):
        parser.error("give settings as GUIDANCE:IMAGE_GUIDANCE (4:3.0)")

    pipeline = load(args.model, accelerators=args.accel)
    edits = metrics.edit_suite(args.n, seed=args.suite_seed)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        sources = [
            str(save_png(to_pil(world.render(e.source)), Path(tmp) / f"{i}.png")) for i, e in enumerate(edits)
        ]
        for guidance, image_guidance in pairs:
            ok, kept = [], []
            for seed in seeds:
                for i, edit in enumerate(edits):
                    request = EditRequest(
                        edit.instruction, image=sources[i], seed=seed + i, guidance=guidance,
                        image_guidance=image_guidance,
                    )  # fmt: skip
                    analysis = analyze(pipeline.run(request).images[0])
                    ok.append(metrics.edit_success(edit, analysis))
                    kept.append(metrics.preservation(edit, analysis))
            rows.append({
                "guidance": guidance, "image_guidance": image_guidance, "cases": len(ok),
                "success": sum(ok) / len(ok), "preservation": sum(kept) / len(kept),
                "by_op": dict(sorted(metrics.by_operation(edits * len(seeds), ok).items())),
            })  # fmt: skip
            r = rows[-1]
            ops = " ".join(f"{op} {h}/{n}" for op, (h, n) in r["by_op"].items())
            setting = "default" if guidance is None else f"{guidance:g} / {image_guidance:g}"
            print(f"| {setting} | {r['success']:.1%} | {r['preservation']:.1%} | {ops} |", flush=True)
    if args.json:
        record = {
            "model": args.model,
            "accelerators": args.accel,
            "suite_seed": args.suite_seed,
            "n": args.n,
            "suite_version": metrics.SUITE_VERSION,
            "seeds": seeds,
            "rows": rows,
        }
        atomic_write_bytes(args.json, (json.dumps(record, indent=2) + "\n").encode(), force=True)


if __name__ == "__main__":
    main()
