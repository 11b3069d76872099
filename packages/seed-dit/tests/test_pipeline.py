from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from seed_cli.main import create_app
from seed_core.errors import CheckpointMismatchError, ConfigError, InvalidRequestError, OutputExistsError
from seed_core.images import read_metadata
from seed_core.pipeline import load
from seed_core.requests import EditRequest, GenerateRequest

MODEL = "seedream-tiny-random"


@pytest.fixture
def registry(seed_registry_factory):
    return seed_registry_factory(entry_points=True, env={})


@pytest.fixture
def pipeline(registry):
    return load(MODEL)


def _pixels(image: Image.Image) -> bytes:
    return image.tobytes()


def test_generate_sizes_seeds_and_batches(pipeline):
    result = pipeline.run(GenerateRequest("a red circle", width=96, height=48, num_images=3, seed=4, steps=2))
    assert [im.size for im in result.images] == [(96, 48)] * 3
    assert result.seeds == [4, 5, 6] and result.settings["task"] == "generate"
    again = pipeline.run(GenerateRequest("a red circle", width=96, height=48, seed=5, steps=2))
    assert _pixels(again.images[0]) == _pixels(result.images[1])  # image i is reproducible from seed + i
    assert _pixels(result.images[0]) != _pixels(result.images[1])
    other_prompt = pipeline.run(GenerateRequest("a blue square", width=96, height=48, seed=5, steps=2))
    assert _pixels(other_prompt.images[0]) != _pixels(again.images[0])


def test_references_and_edit(pipeline, tmp_path):
    refs = []
    for i, colour in enumerate(("red", "blue")):
        Image.new("RGB", (40, 70), colour).save(tmp_path / f"ref{i}.png")
        refs.append(str(tmp_path / f"ref{i}.png"))
    plain = pipeline.run(GenerateRequest("compose", steps=2, guidance=1.0))
    composed = pipeline.run(GenerateRequest("compose", references=refs, steps=2, guidance=1.0))
    assert composed.settings["task"] == "compose" and composed.images[0].size == (64, 64)
    assert _pixels(composed.images[0]) != _pixels(plain.images[0])  # the references reach the model

    edited = pipeline.run(EditRequest("make it blue", image=refs[0], steps=2, num_images=2))
    assert edited.settings["task"] == "edit"
    assert [im.size for im in edited.images] == [(32, 64)] * 2  # the source size, rounded down to 16


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (GenerateRequest("x", width=60), "size 60x64 is not a multiple of 16"),
        (GenerateRequest(" "), "the prompt is empty"),
    ],
)
def test_bad_requests(pipeline, request_, message):
    with pytest.raises(InvalidRequestError, match=message):
        pipeline.run(request_)


def test_bfloat16_pipeline(registry, tmp_path):
    Image.new("RGB", (32, 32), "red").save(tmp_path / "r.png")
    pipe = load(MODEL, dtype="bfloat16")
    result = pipe.run(GenerateRequest("x", references=[str(tmp_path / "r.png")], steps=2))
    edited = pipe.run(EditRequest("y", image=str(tmp_path / "r.png"), steps=2))
    assert result.images[0].size == (64, 64) and edited.images[0].size == (32, 32)


def test_too_many_references(pipeline, tmp_path):
    Image.new("RGB", (16, 16)).save(tmp_path / "r.png")
    with pytest.raises(InvalidRequestError, match="4 reference images given; .* at most 3"):
        pipeline.run(GenerateRequest("x", references=[str(tmp_path / "r.png")] * 4))
    with pytest.raises(InvalidRequestError, match="4 reference images given"):
        pipeline.run(
            EditRequest("x", image=str(tmp_path / "r.png"), references=[str(tmp_path / "r.png")] * 3)
        )


def test_save_and_load_a_model_directory(pipeline, registry, tmp_path):
    pipeline.save_pretrained(tmp_path / "model", dtype="float32")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["seed_model"] == MODEL and config["text_encoder"]["kind"] == "mini"
    loaded = load(str(tmp_path / "model"))
    request = GenerateRequest("same weights", steps=2, seed=1)
    assert _pixels(loaded.run(request).images[0]) == _pixels(pipeline.run(request).images[0])
    with pytest.raises(OutputExistsError, match="already exists"):
        pipeline.save_pretrained(tmp_path / "model")

    (tmp_path / "model" / "dit.safetensors").unlink()
    from seed_core.weights import save_safetensors

    state = pipeline.dit.state_dict()
    state["img_in.weight"] = torch.zeros(3, 3)
    save_safetensors(state, tmp_path / "model" / "dit.safetensors")
    with pytest.raises(CheckpointMismatchError, match="key 'img_in.weight' has shape \\(3, 3\\)"):
        load(str(tmp_path / "model"))

    config["text_encoder"]["kind"] = "nope"
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="unknown text_encoder kind 'nope'"):
        load(str(tmp_path / "model"))


def test_cli_end_to_end(registry, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    app = create_app()
    result = runner.invoke(
        app,
        [
            "generate",
            "a red circle",
            "-m",
            MODEL,
            "--size",
            "32x48",
            "-n",
            "2",
            "--steps",
            "2",
            "-o",
            "out.png",
        ],
    )
    assert result.exit_code == 0, result.output
    data = read_metadata("out-1.png")
    assert data["model"] == MODEL and data["seed"] == 1 and data["settings"]["width"] == 32
    with Image.open("out-0.png") as im:
        assert im.size == (32, 48)
    ref = runner.invoke(
        app, ["generate", "with ref", "-m", MODEL, "--ref", "out-0.png", "--steps", "2", "-o", "ref.png"]
    )
    assert ref.exit_code == 0 and read_metadata("ref.png")["request"]["references"] == ["out-0.png"]
    edit = runner.invoke(app, ["edit", "out-0.png", "make it blue", "-m", MODEL, "--steps", "2"])
    assert edit.exit_code == 0, edit.output
    assert read_metadata("out-0-edited.png")["request"]["task"] == "edit"

    Image.new("RGB", (8, 8)).save("r.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    cases = [
        (["generate", "x", "-m", MODEL, "--size", "50x64"], "is not a multiple of 16"),
        (["generate", "x", "-m", MODEL] + ["--ref", "r.png"] * 4, "at most 3"),
        (["edit", "broken.png", "x", "-m", MODEL], "not a readable image"),
        (["generate", "", "-m", MODEL], "the prompt is empty"),
        (["generate", "x", "-m", MODEL, "--size", "big"], "expected WIDTHxHEIGHT"),
        (["generate", "x", "-m", MODEL, "--size", "32", "--width", "32"], "either --size or --width"),
    ]
    for args, message in cases:
        bad = runner.invoke(app, args)
        assert bad.exit_code == 2, (args, bad.output)
        assert message in bad.output and len(bad.output.strip().splitlines()) == 1


def test_large_models_need_weights(registry):
    from seed_core.errors import NoModelInstalledError

    with pytest.raises(NoModelInstalledError, match="without public weights"):
        load("seedream-8b")
    details = registry.models.get("seedream-8b").details()
    assert 7.5e9 < details["dit_params"] < 9e9 and details["vae_factor"] == 32


def test_sampling_shift_rules(pipeline):
    import dataclasses

    from seed_core.samplers import resolution_shift

    assert pipeline.sampling_shift(256) == pytest.approx(resolution_shift(256))  # default: Flux's rule
    pipeline.config = dataclasses.replace(pipeline.config, shift=3.0, shift_base_tokens=64)
    assert pipeline.sampling_shift(64) == pytest.approx(3.0)
    assert pipeline.sampling_shift(1024) == pytest.approx(12.0)  # SD3's sqrt(tokens / base tokens)
    pipeline.config = dataclasses.replace(pipeline.config, shift_base_tokens=None)
    assert pipeline.sampling_shift(1024) == pytest.approx(3.0)  # a fixed shift
    result = pipeline.run(GenerateRequest("a red circle", steps=1, seed=0))
    assert result.settings["shift"] == pytest.approx(3.0)  # recorded with the image
