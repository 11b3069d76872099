"""Pool `seed eval` runs of one model at several base seeds (`seed eval --seed S --json FILE`), so that
two models can be told apart: one suite has 24 cases a category, and a model at 33% on 96 cases has a
standard error of about 5 points, more than most differences between the students measured here.

Prints, per label, the pooled prompt accuracy by category (cases of every seed together), the mean of
the four categories with its binomial standard error, edit success and preservation (pooled), the mean
diversity entropy ratios and the mean Fréchet distance; writes the same as JSON.

    uv run python benchmarks/pool_evals.py teacher=runs/eval/teacher_s0.json,runs/eval/teacher_s1.json \
        student=runs/eval/student_s0.json,runs/eval/student_s1.json [--json benchmarks/results/pool.json]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

CATEGORIES = ("single", "relation", "counting", "background")


def pool(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled numbers of runs of one model (same suite version, different seeds)."""
    versions = {r["suite_version"] for r in runs}
    if len(versions) > 1:
        raise SystemExit(f"runs of different suite versions {sorted(versions)}: pool one version at a time")
    out: dict[str, Any] = {"runs": len(runs), "seeds": [r["settings"]["seed"] for r in runs]}
    if len(set(out["seeds"])) < len(runs):
        raise SystemExit(f"two runs with the same seed ({out['seeds']}): they are the same samples")
    variance = 0.0
    for c in CATEGORIES:
        n = sum(r["prompt_cases"][c] for r in runs)
        hits = sum(r["prompt_accuracy"][c] * r["prompt_cases"][c] for r in runs)
        p = hits / n
        out[c] = p
        variance += p * (1 - p) / n
    out["mean"] = sum(out[c] for c in CATEGORIES) / len(CATEGORIES)
    out["mean_se"] = math.sqrt(variance) / len(CATEGORIES)
    edits = [r["edit"] for r in runs if r.get("edit")]
    if edits:
        cases = sum(e["cases"] for e in edits)
        out["edit_success"] = sum(e["success"] * e["cases"] for e in edits) / cases
        out["edit_preservation"] = sum(e["preservation"] * e["cases"] for e in edits) / cases
    for name in ("a shape", "two objects"):
        out[f"diversity {name}"] = sum(r["diversity"][name]["entropy_ratio"] for r in runs) / len(runs)
    out["frechet"] = sum(r["frechet"]["distance"] for r in runs) / len(runs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("groups", nargs="+", metavar="LABEL=FILE,FILE,...")
    parser.add_argument("--json", type=Path, help="write the pooled numbers here")
    args = parser.parse_args()
    table: dict[str, dict[str, Any]] = {}
    for group in args.groups:
        label, sep, files = group.partition("=")
        if not sep or not files:
            raise SystemExit(f"'{group}': give LABEL=FILE,FILE,...")
        table[label] = pool([json.loads(Path(f).read_text()) for f in files.split(",")])
    print("| model | runs | single / relation / counting / background | mean ± se | edits | diversity | FD |")
    print("|---|---|---|---|---|---|---|")
    for label, r in table.items():
        cats = " / ".join(f"{100 * r[c]:.1f}" for c in CATEGORIES)
        edit = (
            f"{100 * r['edit_success']:.1f} / {100 * r['edit_preservation']:.1f}%"
            if "edit_success" in r
            else "-"
        )
        div = f"{r['diversity a shape']:.2f} / {r['diversity two objects']:.2f}"
        mean = f"{100 * r['mean']:.1f} ± {100 * r['mean_se']:.1f}%"
        print(f"| {label} | {r['runs']} | {cats}% | {mean} | {edit} | {div} | {r['frechet']:.1f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
