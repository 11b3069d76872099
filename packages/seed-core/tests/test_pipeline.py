from __future__ import annotations

import json

import pytest

from seed_core import hookimpl
from seed_core.errors import ConfigError, UnknownModelError, UnsupportedTaskError, UsageError
from seed_core.pipeline import Pipeline, load, resolve_model
from seed_core.requests import EditRequest, GenerateRequest, GenerationResult
from seed_core.specs import AcceleratorKind, AcceleratorSpec, ModelSpec


class EchoPipeline(Pipeline):
    def __init__(self, spec, options):
        super().__init__(spec)
        self.options = options

    def generate(self, request, progress=None):
        return GenerationResult([], request, self.spec.name, list(self.accelerators), [request.seed])


class Models:
    @hookimpl
    def seed_register_models(self, register):
        register(ModelSpec("echo", "test", ("t2i",), EchoPipeline, aliases=("e",)))
        register(ModelSpec("edit-only", "test", ("edit",), lambda s, o: Pipeline(s)))

    @hookimpl
    def seed_register_accelerators(self, register):
        register(AcceleratorSpec("mark", AcceleratorKind.MEMORY, lambda p, **kw: p))


def test_load_by_name_alias_and_directory(seed_registry_factory, tmp_path):
    seed_registry_factory(Models())
    assert load("e").spec.name == "echo"
    (tmp_path / "config.json").write_text(json.dumps({"seed_model": "echo", "depth": 2}))
    pipeline = load(str(tmp_path), device="cpu", dtype="bfloat16")
    assert pipeline.options.weights == str(tmp_path) and pipeline.options.dtype == "bfloat16"
    assert resolve_model("echo") == (pipeline.spec, None)


def test_directory_errors(seed_registry_factory, tmp_path):
    seed_registry_factory(Models())
    with pytest.raises(UsageError, match="without config.json"):
        load(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="no 'seed_model' key"):
        load(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"seed_model": "eho"}))
    with pytest.raises(UnknownModelError, match="Did you mean 'echo'"):
        load(str(tmp_path))


def test_run_checks_task_and_request(seed_registry_factory):
    seed_registry_factory(Models())
    pipeline = load("echo", accelerators=["mark"])
    result = pipeline.run(GenerateRequest("hi", seed=3))
    assert result.seeds == [3] and [a.name for a in result.accelerators] == ["mark"]
    with pytest.raises(UnsupportedTaskError, match="does not support the 'edit' task"):
        pipeline.run(EditRequest("x", image="y.png"))
    with pytest.raises(UnsupportedTaskError, match="cannot edit"):
        load("edit-only").run(EditRequest("x", image=__file__))
