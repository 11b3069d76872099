"""Shared fixtures of the cross-package tests."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from seed_cli.main import create_app


@pytest.fixture
def run(seed_registry_factory):  # type: ignore[no-untyped-def]
    """`run(*args)` invokes the `seed` CLI in-process with every installed plugin; `run.registry` is the
    registry it uses."""
    registry = seed_registry_factory(entry_points=True, env={})

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return CliRunner().invoke(create_app(), list(args))

    invoke.registry = registry  # type: ignore[attr-defined]
    return invoke
