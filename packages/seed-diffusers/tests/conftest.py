"""Tiny random SD3, Flux and Wan pipelines, built once per test session (no download)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seed_cli.main import create_app


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from seed_diffusers.tiny import FAMILIES, build_tiny

    root = tmp_path_factory.mktemp("tiny-diffusers")
    return {family: build_tiny(family, root / family) for family in FAMILIES}


@pytest.fixture
def clone(tiny: dict[str, Path], tmp_path: Path):  # type: ignore[no-untyped-def]
    """`clone(family)`: a private copy of a tiny pipeline folder (tests that write plans or break it)."""

    made: list[Path] = []

    def make(family: str) -> Path:
        made.append(Path(shutil.copytree(tiny[family], tmp_path / f"{family}-{len(made)}")))
        return made[-1]

    return make


@pytest.fixture
def run(seed_registry_factory):  # type: ignore[no-untyped-def]
    """`run(*args)`: the `seed` CLI in-process with every installed plugin."""
    seed_registry_factory(entry_points=True, env={})

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return CliRunner().invoke(create_app(), list(args))

    return invoke
