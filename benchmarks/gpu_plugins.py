"""Make the workspace's plugins findable where its packages are not installed.

The device machine runs the source tree from PYTHONPATH (it reaches no package index), so no entry point
of the `seed` group exists there and `load("DIR")` finds no model family. This writes, for every package
of the workspace, a `NAME-VERSION.dist-info` folder (METADATA and its `seed` entry points) into DIR;
with DIR on PYTHONPATH, importlib.metadata finds them as it finds installed packages. Standard library
only (Python 3.11+).

    python3 benchmarks/gpu_plugins.py /tmp/seed-plugins && export PYTHONPATH="$PYTHONPATH:/tmp/seed-plugins"
"""

from __future__ import annotations

import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def write_dist_infos(out: Path) -> list[str]:
    """One dist-info per workspace package in `out`; returns the plugin entry points written."""
    written = []
    for pyproject in sorted(ROOT.glob("packages/*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        name, version = project["name"], project["version"]
        info = out / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        plugins = project.get("entry-points", {}).get("seed", {})
        if plugins:
            lines = "".join(f"{key} = {value}\n" for key, value in plugins.items())
            (info / "entry_points.txt").write_text("[seed]\n" + lines)
            written += [f"{name}: {key} = {value}" for key, value in plugins.items()]
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 benchmarks/gpu_plugins.py DIR", file=sys.stderr)
        return 2
    for line in write_dist_infos(Path(argv[0])):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
