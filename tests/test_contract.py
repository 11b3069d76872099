"""Cross-package rules: import hygiene between packages, and the CLI end to end in real processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGES = sorted(
    p.name
    for p in (Path(__file__).resolve().parents[1] / "packages").iterdir()
    if (p / "pyproject.toml").exists()
)
FIRST_PARTY = {name.replace("-", "_") for name in PACKAGES} | {"seed_plugin_example"}


def _imported_after(statement: str) -> set[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return {m.split(".")[0] for m in json.loads(out.stdout)}


@pytest.mark.parametrize(
    "module",
    [
        "seed_core",
        "seed_core.registry",
        "seed_core.specs",
        "seed_core.hookspecs",
        "seed_core.plugins",
        "seed_core.config",
        "seed_core.builtin",
        "seed_cli.main",
    ],
)
def test_light_modules_do_not_import_torch(module):
    assert "torch" not in _imported_after(f"import {module}")


def test_meta_builds_do_not_import_sympy():
    # building a model on the meta device must not initialise weights through torch's reference ops,
    # which import sympy and dynamo (seconds of start-up on every `seed generate`)
    imported = _imported_after(
        "from seed_core.weights import build_on_meta\nfrom seed_dit.model import MMDiT\n"
        "from seed_dit.config import MMDiTConfig\nbuild_on_meta(lambda: MMDiT(MMDiTConfig.preset('tiny')))"
    )
    assert "sympy" not in imported


def test_seed_core_never_imports_a_sibling():
    modules = (
        "seed_core.attention",
        "seed_core.samplers",
        "seed_core.weights",
        "seed_core.pipeline",
        "seed_core.images",
        "seed_core.testing",
    )
    imported = _imported_after(
        "\n".join(f"import {m}" for m in modules) + "\nfrom seed_core.registry import get_registry\n"
        "import os\nos.environ['SEED_DISABLE_PLUGINS'] = 'all'\nget_registry()"
    )
    assert imported & FIRST_PARTY == {"seed_core"}


BACKBONES = {"seed_dit", "seed_video", "seed_diffusers"}
ACCELERATORS = {"seed_attn", "seed_quant", "seed_distill"}
# DESIGN.md: backbones never import an accelerator package; accelerators never import a backbone package;
# the VAE package only needs the core
FORBIDDEN = {
    **{b: ACCELERATORS for b in BACKBONES},
    **{a: BACKBONES | {"seed_vae", "seed_mini"} for a in ACCELERATORS},
    "seed_vae": FIRST_PARTY - {"seed_core", "seed_vae"},
}


@pytest.mark.parametrize("package", sorted(set(FORBIDDEN) & FIRST_PARTY))
def test_package_dependency_rules(package):
    import importlib.util
    import pkgutil

    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations
    modules = [package] + [
        f"{package}.{m.name}" for m in pkgutil.iter_modules(spec.submodule_search_locations)
    ]
    imported = _imported_after("\n".join(f"import {m}" for m in modules))
    assert not imported & FORBIDDEN[package], f"{package} imports {imported & FORBIDDEN[package]}"


def _seed(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("seed", path=str(Path(sys.executable).parent))
    assert exe, "the seed console script is not installed next to this interpreter"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SEED_")} | (env or {})
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, env=full_env)


def test_broken_plugin_in_a_real_process(tmp_path):
    site = tmp_path / "site"
    (site / "seedtest_broken-0.0.1.dist-info").mkdir(parents=True)
    (site / "seedtest_broken-0.0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: seedtest-broken\nVersion: 0.0.1\n"
    )
    (site / "seedtest_broken-0.0.1.dist-info" / "entry_points.txt").write_text(
        "[seed]\nseedtest-broken = seedtest_broken_plugin\n"
    )
    (site / "seedtest_broken_plugin.py").write_text("raise RuntimeError('boom at import')\n")
    env = {"PYTHONPATH": str(site)}

    plugins = _seed("plugins", "--json", env=env)
    assert plugins.returncode == 0, plugins.stderr
    status = {p["name"]: (p["status"], p["error"]) for p in json.loads(plugins.stdout)}
    assert status["seedtest-broken"] == ("failed", "RuntimeError: boom at import")
    assert status["example"] == ("loaded", None)

    models = _seed("models", "--json", env=env)
    assert models.returncode == 0 and "toy-gradient" in models.stdout
    assert _seed("--help", env=env).returncode == 0

    quiet = _seed("plugins", "--json", env={**env, "SEED_DISABLE_PLUGINS": "seedtest-broken"})
    status = {p["name"]: p["status"] for p in json.loads(quiet.stdout)}
    assert (status["seed-core"], status["example"], status["seedtest-broken"]) == (
        "builtin",
        "loaded",
        "disabled",
    )

    only = _seed("plugins", "--json", env={**env, "SEED_LOAD_PLUGINS": "seedtest-broken"})
    status = {p["name"]: p["status"] for p in json.loads(only.stdout)}
    assert status.pop("seedtest-broken") == "failed" and status.pop("seed-core") == "builtin"
    assert set(status.values()) == {"disabled"}


def test_corrupt_model_directory_in_a_real_process(tmp_path):
    import torch

    from seed_core.weights import save_safetensors

    save_safetensors(
        {"mix.weight": torch.zeros(3, 3, 1, 1), "mix.bias": torch.zeros(3)}, tmp_path / "model.safetensors"
    )
    (tmp_path / "config.json").write_text('{"seed_model": "toy-gradient"}')
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[:-7])
    result = _seed("generate", "x", "-m", str(tmp_path), "-o", str(tmp_path / "o.png"))
    assert result.returncode == 1
    assert "corrupt or truncated" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    save_safetensors(
        {"mix.weight": torch.zeros(3, 2, 1, 1), "mix.bias": torch.zeros(3)},
        tmp_path / "model.safetensors",
        force=True,
    )
    result = _seed("generate", "x", "-m", str(tmp_path), "-o", str(tmp_path / "o.png"))
    assert result.returncode == 1 and "key 'mix.weight' has shape (3, 2, 1, 1)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_model_in_a_real_process():
    result = _seed("generate", "x", "-m", "toy-gradiant")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "Error: Unknown model 'toy-gradiant'. Did you mean 'toy-gradient'? (see `seed models`)"
    )
    assert "Traceback" not in result.stderr + result.stdout


def test_generate_then_info_in_a_real_process(tmp_path):
    out = tmp_path / "img.png"
    made = _seed("generate", "a purple dusk", "-m", "toy", "-o", str(out), "--steps", "3")
    assert made.returncode == 0, made.stderr
    info = _seed("info", str(out), "--json")
    assert json.loads(info.stdout)["request"]["prompt"] == "a purple dusk"
