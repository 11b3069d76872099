"""Wall time of `seed --help` as a whole process (median of N runs).

    uv run python benchmarks/cli_startup.py [--runs 5] [--json benchmarks/results/cli_startup.json]

The budget is 0.5 s on a 2-core CPU: `seed --help` loads every plugin (their modules must stay light) but
must never import torch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BUDGET_S = 0.5


def time_command(command: list[str], runs: int) -> list[float]:
    subprocess.run(command, capture_output=True, check=True)  # warm the OS file cache once
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "cli_startup.json")
    args = parser.parse_args()

    seed = shutil.which("seed", path=str(Path(sys.executable).parent)) or shutil.which("seed")
    if seed is None:
        print("error: the `seed` command is not installed; run `uv sync` first", file=sys.stderr)
        return 2
    rows = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "seed --help": [seed, "--help"],
        "seed samplers": [seed, "samplers"],
    }
    results = {}
    print(f"{'command':<18} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, command in rows.items():
        times = time_command(command, args.runs)
        results[name] = {
            "median_s": statistics.median(times),
            "min_s": min(times),
            "max_s": max(times),
            "runs": args.runs,
        }
        print(f"{name:<18} {statistics.median(times):>9.3f} {min(times):>7.3f} {max(times):>7.3f}")
    help_median = results["seed --help"]["median_s"]
    verdict = "PASS" if help_median < BUDGET_S else "FAIL"
    print(f"seed --help median {help_median:.3f} s, budget {BUDGET_S} s: {verdict}")
    report = {
        "benchmark": "cli_startup",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "budget_s": BUDGET_S,
        "results": results,
        "pass": verdict == "PASS",
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
