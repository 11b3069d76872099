"""The example plugin is found only through its entry point, and each part it registers works."""

from __future__ import annotations

import math
from importlib import metadata

import pytest
import torch

from seed_core.pipeline import load
from seed_core.registry import Registry
from seed_core.requests import GenerateRequest
from seed_core.samplers import flow_timesteps
from seed_core.weights import save_safetensors


def test_discovered_through_its_entry_point_only():
    eps = [ep for ep in metadata.entry_points(group="seed") if ep.name == "example"]
    assert [ep.value for ep in eps] == ["seed_plugin_example.plugin"]
    registry = Registry.from_plugins(entry_points=True, env={})
    assert registry.models.owner("toy-gradient") == "example"
    assert registry.accelerators.owner("toy-fewer-steps") == "example"
    assert registry.samplers.owner("toy-midpoint") == "example"
    off = Registry.from_plugins(entry_points=True, env={"SEED_DISABLE_PLUGINS": "seed-plugin-example"})
    assert "toy-gradient" not in off.models


def test_generate_with_accelerator_and_plugin_sampler(seed_registry_factory):
    seed_registry_factory(entry_points=True, env={})
    pipeline = load("toy", accelerators=["toy-fewer-steps:factor=4"])
    result = pipeline.run(GenerateRequest("a yellow field", steps=8, sampler="toy-midpoint", num_images=2))
    assert result.settings["steps"] == 2 and len(result.images) == 2 and result.seeds == [0, 1]
    r, g, b = result.images[0].getpixel((10, 0))
    assert r > 200 and g > 180 and b < 70


def test_weights_load_from_a_model_directory(seed_registry_factory, tmp_path):
    seed_registry_factory(entry_points=True, env={})
    swap = torch.tensor([[0.0, 0, 1], [0, 1, 0], [1, 0, 0]]).view(3, 3, 1, 1)  # red <-> blue
    save_safetensors({"mix.weight": swap, "mix.bias": torch.zeros(3)}, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text('{"seed_model": "toy-gradient"}')
    result = load(str(tmp_path)).run(GenerateRequest("red", steps=4))
    r, _g, b = result.images[0].getpixel((10, 0))
    assert b > 200 and r < 60  # the swapped mixer turned red into blue

    save_safetensors({"mix.weight": torch.zeros(3, 3, 1, 1)}, tmp_path / "model.safetensors", force=True)
    from seed_core.errors import CheckpointMismatchError

    with pytest.raises(CheckpointMismatchError, match="missing 1 key\\(s\\) the model needs: 'mix.bias'"):
        load(str(tmp_path))


def test_midpoint_is_second_order():
    from seed_plugin_example.model import FlowMatchMidpoint

    def velocity(x, t):  # dx/dt = x: x(0) = x(1) / e
        return x

    x1 = torch.ones(1, dtype=torch.float64)
    errors = [
        abs(
            FlowMatchMidpoint().sample(velocity, x1, flow_timesteps(n, dtype=torch.float64)).item()
            - math.exp(-1)
        )
        for n in (16, 32)
    ]
    assert 1.9 < math.log2(errors[0] / errors[1]) < 2.1
