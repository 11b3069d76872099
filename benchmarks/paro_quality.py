"""PAROAttention quality on seedream-mini at 256x256 (1,048 tokens): dense attention against `--accel paro`
at several densities and bit widths, with and without the calibrated reordering (the paper's central
claim: reordering is what keeps quality at low density).

Per configuration, through `seed eval`'s text-to-image suites at 256 px: prompt accuracy by category, the
Fréchet distance on the world classifier's features, and the PSNR of every output against the dense
output of the same prompt and seed. Needs the shipped plan (`seed calibrate --size 256x256`).

    uv run python benchmarks/paro_quality.py [--fraction 16] [--only "paro d0.3 int8" ...] [--no-draft] \
        [--add NAME=ACCEL ...] [--seed S] [--plan DIR] [--paro-model DIR] [--dense-cache FILE] \
        [--json benchmarks/results/paro-quality.json]

`--dense-cache FILE` keeps the dense run (its images and scores) for later runs with the same settings, so
a run of other configurations does not sample dense again.

seedream-mini draws images above 64 px as a 64-px draft (exact attention) refined at full size from
t = 0.5 (PARO on those two steps, each in its own timestep group of the plan, so a schedule such as
`paro:schedule=0.2/0.4` gives each its own density); `--no-draft` runs every step at full size.

The configurations run the plan training-free (`tuned=false`), but the last, `paro as shipped`: plain
`--accel paro`, which on a plan carrying a backbone tuned for it (`seed tune`; seedream-mini's since
session 31) runs that copy at the masks it was tuned for.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from seed_mini.evaluate import evaluate

CONFIGS = [  # each density with and without reordering, side by side, training-free (tuned=false)
    ("dense", []),
    ("paro d0.3 int8", ["paro:density=0.3,bits=8,tuned=false"]),
    ("no reorder d0.3 int8", ["paro:density=0.3,bits=8,reorder=false,tuned=false"]),
    # the budget of density 0.3 spent unevenly over the two refine steps (t 0.5 and 0.387 at 256 px):
    # less on the first, more on the one that writes the output
    ("paro d0.2/0.4 int8", ["paro:schedule=0.2/0.4,bits=8,tuned=false"]),
    ("no reorder d0.2/0.4 int8", ["paro:schedule=0.2/0.4,bits=8,reorder=false,tuned=false"]),
    ("paro d0.2 int8", ["paro:density=0.2,bits=8,tuned=false"]),
    ("no reorder d0.2 int8", ["paro:density=0.2,bits=8,reorder=false,tuned=false"]),
    ("paro d0.5 int8", ["paro:density=0.5,bits=8,tuned=false"]),
    ("no reorder d0.5 int8", ["paro:density=0.5,bits=8,reorder=false,tuned=false"]),
    ("paro d0.3 16-bit", ["paro:density=0.3,bits=16,tuned=false"]),
    ("paro d0.3 int4", ["paro:density=0.3,bits=4,tuned=false"]),
    # what `--accel paro` runs on a model whose plan carries a backbone tuned for it (seed tune): its masks
    ("paro as shipped", ["paro"]),
]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float((a.float() - b.float()).pow(2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="seedream-mini")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--fraction", type=int, default=16, help="run 1/N of each suite (CPU time)")
    parser.add_argument("--seed", type=int, default=0, help="base seed of the suites (as `seed eval --seed`)")
    parser.add_argument("--only", nargs="*", help="configuration names to run (default: all)")
    parser.add_argument(
        "--add",
        action="append",
        default=[],
        metavar="NAME=ACCEL",
        help="another configuration (repeatable): a name and one --accel value, e.g. 'x=paro:density=0.4'",
    )
    parser.add_argument(
        "--no-draft",
        action="store_true",
        help="sample every step at full size (default: the model's draft at 64 px, refined at full size)",
    )
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/paro-quality.json"))
    parser.add_argument("--plan", help="PARO plan directory [the model's own]")
    parser.add_argument(
        "--paro-model",
        help="run the configurations other than dense on this model (e.g. one fine-tuned for its plan), "
        "against --model's dense outputs",
    )
    parser.add_argument(
        "--dense-cache", type=Path, help="reuse (or write) the dense run here (same model weights only)"
    )
    args = parser.parse_args()
    settings = {"model": args.model, "size": args.size, "fraction": args.fraction, "seed": args.seed,
                "draft": not args.no_draft}  # fmt: skip
    cached = None
    if args.dense_cache and args.dense_cache.is_file():
        cached = torch.load(args.dense_cache, weights_only=False)
        if cached["settings"] != settings:
            parser.error(
                f"--dense-cache {args.dense_cache} holds a run with {cached['settings']}, not {settings}"
            )
    rows = []
    dense_images: list[torch.Tensor] = []
    added = [(name, [accel]) for name, _, accel in (a.partition("=") for a in args.add)]
    wanted = {*(args.only or []), *(name for name, _ in added)}  # empty: every configuration
    for name, accel in CONFIGS + added:
        if wanted and name not in wanted and name != "dense":
            continue
        accel = [
            f"{a}{',' if ':' in a else ':'}plan={args.plan}" if args.plan and a.split(":")[0] == "paro" else a
            for a in accel
        ]
        images: list[torch.Tensor] = []
        start = time.perf_counter()
        if name == "dense" and cached is not None:
            result, images, seconds = cached["result"], cached["images"], cached["seconds"]
            start -= seconds
        else:
            result = evaluate(
                args.paro_model if args.paro_model and name != "dense" else args.model,
                accel,
                size=args.size,
                fraction=args.fraction,
                images=images,
                draft=False if args.no_draft else None,
                seed=args.seed,
            )
        if name == "dense":
            dense_images = images
            if args.dense_cache and cached is None:
                args.dense_cache.parent.mkdir(parents=True, exist_ok=True)
                record = {"settings": settings, "result": result, "images": images,
                          "seconds": time.perf_counter() - start}  # fmt: skip
                torch.save(record, args.dense_cache)
        scores = [psnr(a, b) for a, b in zip(images, dense_images, strict=True)]
        finite = [s for s in scores if s != float("inf")]
        rows.append(
            {
                "config": name,
                "accelerators": accel,
                "model": args.paro_model if args.paro_model and name != "dense" else args.model,
                "prompt_accuracy": result["prompt_accuracy"],
                "prompt_cases": result["prompt_cases"],
                "frechet": result["frechet"],
                "psnr_vs_dense_db": sum(finite) / len(finite) if finite else float("inf"),
                "images": len(images),
                "seconds": time.perf_counter() - start,
            }
        )
        r = rows[-1]
        acc = " ".join(f"{k} {v:.0%}" for k, v in r["prompt_accuracy"].items())
        print(f"{name:<22} {acc}  FD {r['frechet']['distance']:.1f} (floor {r['frechet']['floor']:.1f})  "
              f"PSNR vs dense {r['psnr_vs_dense_db']:.1f} dB  {r['seconds']:.0f} s", flush=True)  # fmt: skip
        # after every configuration: a long run cut short keeps what it measured
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**settings, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
