"""What goes wrong in one category of `seed eval`'s prompt suite: each case's prompt against what the analyzer
reads in the image (colour, shape, centre), with counts of images holding the right number of objects
and of images where every asked-for (shape, colour) is present.

    uv run python training/seedream-mini/diagnose_prompts.py [MODEL] [--category relation]
        [--no-pooled]            # zero the pooled text vector (as pooled-vector dropout trains it)
        [--size 256 --interpolate]   # image positions scaled to the 64-px grid's range (RoPE interpolation)

The cases and seeds are `seed eval`'s own (the suite's single@256 cases with --size).
"""

from __future__ import annotations

import argparse

import torch

import seed_dit.model as mmdit
import seed_dit.text as text_encoders
from seed_core.images import from_pil
from seed_core.pipeline import load
from seed_core.requests import GenerateRequest
from seed_mini import metrics
from seed_mini.analyzer import analyze

BASE_GRID = 8  # patches a side at 64 px


def zero_pooled() -> None:
    encode = text_encoders.MiniTextEncoder.encode_ids

    def without_pooled(self, ids, mask):  # type: ignore[no-untyped-def]
        e = encode(self, ids, mask)
        return text_encoders.TextEmbeddings(e.tokens, e.mask, torch.zeros_like(e.pooled))

    text_encoders.MiniTextEncoder.encode_ids = without_pooled  # type: ignore[method-assign]


def interpolate_positions() -> None:
    image_positions, text_positions = mmdit.image_positions, mmdit.text_positions

    def scaled_image(h, w, index=0, device="cpu"):  # type: ignore[no-untyped-def]
        p = image_positions(h, w, index, device).double()
        if max(h, w) > BASE_GRID:
            p[:, 1:] *= BASE_GRID / max(h, w)
        return p

    def scaled_text(length, start, device="cpu"):  # type: ignore[no-untyped-def]
        return text_positions(length, min(start, BASE_GRID), device).double()

    mmdit.image_positions, mmdit.text_positions = scaled_image, scaled_text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?", default="seedream-mini")
    parser.add_argument(
        "--category", default="relation", choices=("single", "relation", "counting", "background")
    )
    parser.add_argument("--no-pooled", action="store_true")
    parser.add_argument("--size", type=int)
    parser.add_argument("--interpolate", action="store_true")
    args = parser.parse_args()
    if args.no_pooled:
        zero_pooled()
    if args.interpolate:
        interpolate_positions()
    pipeline = load(args.model)
    if args.size:  # seed eval's single-object cases at 256 px, seeds 0, 1, ...
        cases = [
            (i, c)
            for i, c in enumerate(c for c in metrics.prompt_suite(8, seed=2029) if c.category == "single")
        ]
    else:
        suite = metrics.prompt_suite(24)
        cases = [(i, c) for i, c in enumerate(suite) if c.category == args.category]
    right = counted = present = 0
    for seed, case in cases:
        request = GenerateRequest(case.prompt, seed=seed, width=args.size or 64, height=args.size or 64)
        analysis = analyze(from_pil(pipeline.run(request).images[0]))
        ok = metrics.score_prompt(case, analysis)
        right += ok
        counted += len(analysis.objects) == len(case.objects)
        present += metrics._assign(case.objects, analysis.objects) is not None
        found = ", ".join(f"{d.colour} {d.shape} ({d.x:.2f}, {d.y:.2f})" for d in analysis.objects)
        print(f"{'right' if ok else 'wrong'}  {case.prompt}  ->  {found or 'nothing'}")
    summary = f"{right} of {len(cases)} right; {counted} with the right number of objects"
    print(f"\n{summary}; {present} with every object asked for")


if __name__ == "__main__":
    main()
