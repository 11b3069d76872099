"""Pool `seed eval` runs of a model made separately (`seed eval --seed S --json FILE`, for instance side by
side on two cores) as `seed eval --seeds N` pools its own runs (`seed_mini.evaluate.pool`), and print one
row per model: one suite has 24 cases a category, and a mean near 33% on 96 cases has a standard error of
about 5 points, more than most differences measured between students.

Diversity samples are seeded at seed + 1000 + i (i < 48): runs whose base seeds are under 48 apart share
most of them, so their pooled diversity is nearly one run's (a note says so); prompt and edit cases
differ at any two seeds.

    uv run python benchmarks/pool_evals.py teacher=runs/eval/teacher_s0.json,runs/eval/teacher_s1.json \
        student=runs/eval/student_s0.json,runs/eval/student_s1.json [--json benchmarks/results/pool.json] \
        [--paired teacher]

`--paired LABEL` compares every other group with LABEL case by case (`seed_mini.evaluate.paired`: runs
since session 32 keep their outcomes): the same prompts and noise on both sides, so the difference of
the mean prompt accuracy comes with a paired standard error, much smaller than the two means' own.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

from seed_mini.evaluate import CATEGORIES, paired, pool


def row(label: str, r: dict[str, Any]) -> str:
    p = r.get("pooled", {"seeds": [r["settings"]["seed"]]})
    if "prompt_mean" not in p:
        p = pool([r])["pooled"]
    cats = " / ".join(f"{100 * r['prompt_accuracy'][c]:.1f}" for c in CATEGORIES)
    edit = "-"
    if r["edit"]["cases"]:
        edit = f"{100 * r['edit']['success']:.1f} / {100 * r['edit']['preservation']:.1f}%"
    div = " / ".join(f"{d['entropy_ratio']:.2f}" for d in r["diversity"].values())
    mean = f"{100 * p['prompt_mean']:.1f} ± {100 * p['prompt_mean_se']:.1f}%"
    seeds = ", ".join(map(str, p["seeds"]))
    return f"| {label} | {seeds} | {cats}% | {mean} | {edit} | {div} | {r['frechet']['distance']:.1f} |"


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("groups", nargs="+", metavar="LABEL=FILE,FILE,...")
    parser.add_argument("--json", type=Path, help="write the pooled results here")
    parser.add_argument(
        "--paired", metavar="LABEL", help="compare every other group with this one, case by case"
    )
    args = parser.parse_args()
    table: dict[str, dict[str, Any]] = {}
    for group in args.groups:
        label, sep, files = group.rpartition("=")  # a label may hold "=" (tscd:steps=4), a file not
        if not sep or not files:
            raise SystemExit(f"'{group}': give LABEL=FILE,FILE,...")
        try:
            table[label] = pool([json.loads(Path(f).read_text()) for f in files.split(",")])
        except (OSError, ValueError) as exc:
            raise SystemExit(f"{label}: {exc}") from None
    columns = ("model", "seeds", "single / relation / counting / background", "mean ± se", "edits")
    print("| " + " | ".join((*columns, "diversity", "FD")) + " |")
    print("|---|---|---|---|---|---|---|")
    for label, r in table.items():
        print(row(label, r))
    close = [k for k, r in table.items() if min(_gaps(r["pooled"]["seeds"]), default=48) < 48]
    if close:
        print(f"\nnote: {', '.join(close)}: base seeds under 48 apart share most diversity samples")
    if args.paired:
        if args.paired not in table:
            raise SystemExit(f"--paired {args.paired}: no such group; groups are {', '.join(table)}")
        columns = ("mean difference ± paired se", "right only here / only there")
        print(f"\n| against {args.paired}, case by case | " + " | ".join(columns) + " |")
        print("|---|---|---|")
        for label, r in table.items():
            if label == args.paired:
                continue
            try:
                d = paired(r, table[args.paired])
            except ValueError as exc:
                raise SystemExit(f"--paired: {label}: {exc}") from None
            cats = ", ".join(f"{k} {v['only_first']}/{v['only_second']}" for k, v in d["categories"].items())
            diff = f"{100 * d['prompt_mean_difference']:+.1f} ± {100 * d['prompt_mean_difference_se']:.1f}"
            print(f"| {label} | {diff} points | {cats} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(table, indent=2) + "\n")


def _gaps(seeds: list[int]) -> list[int]:
    return [b - a for a, b in itertools.pairwise(sorted(seeds))]


if __name__ == "__main__":
    main()
