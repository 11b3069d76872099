"""Pytest fixtures for plugin authors, installed through the `pytest11` entry point.

    def test_my_model_registers(seed_registry_factory):
        import my_plugin
        registry = seed_registry_factory(my_plugin)      # core parts + my_plugin only, no other plugins
        assert "my-model" in registry.models

Each test gets fresh registries; the process-wide registry is restored afterwards, so tests never see
plugins installed in the environment unless they ask for them (`entry_points=True`).
`seed_entry_point_plugin` installs a throw-away distribution with a `seed` entry point, to test discovery
the way users' installs are discovered.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pluggy
import pytest

from seed_core.plugins import new_plugin_manager
from seed_core.registry import Registry, use_registry


@pytest.fixture
def seed_plugin_manager() -> pluggy.PluginManager:
    """A fresh plugin manager holding the hook specs and seed-core's built-in parts only."""
    return new_plugin_manager()


@pytest.fixture
def seed_registry_factory() -> Iterator[Callable[..., Registry]]:
    """`factory(*plugins, entry_points=False, env=None)` builds a registry and makes it the current one."""
    stack: list[object] = []

    def factory(*plugins: object, entry_points: bool = False, env: dict[str, str] | None = None) -> Registry:
        registry = Registry.from_plugins(*plugins, entry_points=entry_points, env=env)
        ctx = use_registry(registry)
        ctx.__enter__()
        stack.append(ctx)
        return registry

    yield factory
    while stack:
        stack.pop().__exit__(None, None, None)  # type: ignore[attr-defined]


@pytest.fixture
def seed_registry(seed_registry_factory: Callable[..., Registry]) -> Registry:
    """The current registry for this test: seed-core's built-in parts and nothing else."""
    return seed_registry_factory()


@pytest.fixture
def seed_entry_point_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], Path]:
    """`install(name, source)`: a distribution `name` whose `seed` entry point is a module holding `source`.

    The distribution goes on `sys.path` for this test only; returns the directory (for PYTHONPATH).
    """
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))

    def install(name: str, source: str) -> Path:
        module = f"{name.replace('-', '_')}_seed_plugin"
        (root / f"{module}.py").write_text(textwrap.dedent(source))
        info = root / f"{name.replace('-', '_')}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
        (info / "entry_points.txt").write_text(f"[seed]\n{name} = {module}\n")
        monkeypatch.delitem(sys.modules, module, raising=False)
        importlib.invalidate_caches()
        return root

    return install


@dataclass(frozen=True)
class GpuBinary:
    """What `compile_for_gpu` made of one kernel: its machine code's size and the shared memory (bytes)
    one block of it needs, what a launch is refused for past the GPU's limit (227 KB on Hopper)."""

    size: int
    shared: int


def compile_for_gpu(
    kernels: list[
        tuple[str, dict[str, str], dict[str, object]]
        | tuple[str, dict[str, str], dict[str, object], dict[str, int]]
    ],
    *,
    arch: int = 90,
) -> list[GpuBinary]:
    """Compile Triton kernels for an NVIDIA GPU of compute capability `arch` (90: Hopper) on a machine
    without one; returns each kernel's machine code size and shared memory, and raises AssertionError
    with the compiler's message for one that does not compile.

    Each entry is ("package.module:function" of the plain, undecorated kernel function, the Triton types
    of its pointer and float arguments ("*bf16", "*i8", "fp32"; others are i32), its constexprs[, launch
    options such as {"num_warps": 8, "num_stages": 3}]). Why: the interpreter (TRITON_INTERPRET=1) runs
    what the compiler refuses, such as a kernel that reads a module-level float, so a kernel tested only
    that way can fail on its first GPU run. The compiler runs in a child process without
    TRITON_INTERPRET: once set, the interpreter has patched Triton in this one."""
    import json
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    jobs = [list(k) if len(k) == 4 else [*k, {}] for k in kernels]
    proc = subprocess.run(
        [sys.executable, "-c", _COMPILE, json.dumps({"arch": arch, "kernels": jobs})],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode:
        raise AssertionError(proc.stderr.strip()[-3000:])
    return [GpuBinary(int(a), int(b)) for a, b in (line.split() for line in proc.stdout.splitlines())]


_COMPILE = """
import importlib, json, sys
from triton import compile
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.jit import JITFunction

job = json.loads(sys.argv[1])
for path, types, constexprs, options in job["kernels"]:
    module, name = path.split(":")
    kernel = JITFunction(getattr(importlib.import_module(module), name))
    signature = {a: "constexpr" if a in constexprs else types.get(a, "i32") for a in kernel.arg_names}
    source = ASTSource(kernel, signature, constexprs)
    compiled = compile(source, target=GPUTarget("cuda", job["arch"], 32), options=options)
    print(len(compiled.asm["cubin"]), compiled.metadata.shared)
"""
