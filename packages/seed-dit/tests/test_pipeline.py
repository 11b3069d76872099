from __future__ import annotations

import json

import numpy as np
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


def _close(a: Image.Image, b: Image.Image) -> bool:
    """Equal up to the rounding of batched against single convolutions (which depends on the CPU and
    its thread count): no pixel more than 2 of 255 apart."""
    return int(np.abs(np.asarray(a).astype(int) - np.asarray(b).astype(int)).max()) <= 2


def test_generate_sizes_seeds_and_batches(pipeline):
    result = pipeline.run(GenerateRequest("a red circle", width=96, height=48, num_images=3, seed=4, steps=2))
    assert [im.size for im in result.images] == [(96, 48)] * 3
    assert result.seeds == [4, 5, 6] and result.settings["task"] == "generate"
    again = pipeline.run(GenerateRequest("a red circle", width=96, height=48, seed=5, steps=2))
    assert _close(again.images[0], result.images[1])  # image i is reproducible from seed + i
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


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [  # each had ended in a traceback (ValueError, ZeroDivisionError, AttributeError, RuntimeError)
        ("dit", "heads", 0, "the 'dit' section does not make a model"),
        ("dit", "hidden", 30, "the 'dit' section does not make a model"),
        ("dit", "mlp_ratio", -1.0, "the 'dit' section does not make a model"),
        ("vae", "channels", [], "the 'vae' section does not make a model"),
        (None, "dit", [1, 2], "the 'dit' section must be an object"),
        (None, "pipeline", "x", "the 'pipeline' section must be an object"),
        ("pipeline", "width", 0, "pipeline width must be >= 1, got 0"),
        ("pipeline", "shift", -3.0, "pipeline shift must be > 0"),
    ],
)
def test_a_config_that_makes_no_model_is_one_line(pipeline, tmp_path, section, key, value, message):
    pipeline.save_pretrained(tmp_path / "model", dtype="float32")
    file = tmp_path / "model" / "config.json"
    config = json.loads(file.read_text())
    (config if section is None else config.setdefault(section, {}))[key] = value
    file.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=f"config.json: {message}"):
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
    direct = runner.invoke(app, ["generate", "x", "-m", MODEL, "--steps", "1", "--no-draft", "-o", "nd.png"])
    assert direct.exit_code == 0 and read_metadata("nd.png")["request"]["draft"] is False

    Image.new("RGB", (8, 8)).save("r.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    cases = [
        (["generate", "x", "-m", MODEL, "--size", "50x64"], "is not a multiple of 16"),
        (["generate", "x", "-m", MODEL] + ["--ref", "r.png"] * 4, "at most 3"),
        (["edit", "broken.png", "x", "-m", MODEL], "not a readable image"),
        (["generate", "", "-m", MODEL], "the prompt is empty"),
        (["generate", "x", "-m", MODEL, "--size", "big"], "expected WIDTHxHEIGHT"),
        (["generate", "x", "-m", MODEL, "--size", "32", "--width", "32"], "either --size or --width"),
        (["generate", "x", "-m", MODEL, "--draft"], "has no draft size; drop --draft"),
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


def test_a_draft_refined_at_full_size(pipeline):
    import dataclasses

    from seed_core.samplers import flow_timesteps

    pipeline.config = dataclasses.replace(pipeline.config, draft_side=32, refine_from=0.5)
    calls: list[tuple[tuple[int, ...], float]] = []
    hook = pipeline.dit.register_forward_hook(
        lambda _m, args, _out: calls.append((tuple(args[0].shape[-2:]), args[2].position_scale))
    )
    ticks: list[tuple[int, int]] = []
    result = pipeline.run(
        GenerateRequest("a red circle", num_images=2, seed=4, steps=4),
        progress=lambda i, n: ticks.append((i, n)),
    )
    grid = flow_timesteps(4, result.settings["shift"])
    refine = int((grid < 0.5).sum())  # the full-size grid's points below refine_from, entered at 0.5
    assert result.settings["draft"] == [32, 32] and result.settings["refine_steps"] == refine
    assert result.settings["refine_from"] == 0.5 and result.images[0].size == (64, 64)
    # four draft steps on the latents of 32 px, then the refine on those of 64 px with the image
    # positions interpolated to the draft's span
    assert calls == [((4, 4), 1.0)] * 4 + [((8, 8), 0.5)] * refine
    assert ticks == [(i, 4 + refine) for i in range(1, 5 + refine)]
    again = pipeline.run(GenerateRequest("a red circle", seed=5, steps=4))
    assert _close(again.images[0], result.images[1])  # seed + i alone reproduces image i
    assert not _close(result.images[0], result.images[1])

    calls.clear()
    direct = pipeline.run(GenerateRequest("a red circle", seed=5, steps=4, draft=False))
    assert "draft" not in direct.settings and calls == [((8, 8), 1.0)] * 4
    small = pipeline.run(GenerateRequest("a red circle", seed=5, steps=1, width=32, height=32))
    assert "draft" not in small.settings  # nothing above the draft size to refine
    wide = pipeline.run(GenerateRequest("a red circle", seed=5, steps=1, width=128, height=64))
    assert wide.settings["draft"] == [32, 16] and wide.images[0].size == (128, 64)
    hook.remove()

    edited = pipeline.run(EditRequest("make it blue", image=_saved(result.images[0], pipeline), steps=1))
    assert "draft" not in edited.settings  # edits keep the source's layout: no draft

    pipeline.config = dataclasses.replace(pipeline.config, draft_side=None)
    with pytest.raises(InvalidRequestError, match="has no draft size; drop --draft"):
        pipeline.run(GenerateRequest("a red circle", steps=1, draft=True))
    from seed_dit.pipeline import PipelineConfig

    with pytest.raises(ConfigError, match="refine_from must be in"):
        PipelineConfig.from_dict({"draft_side": 64, "refine_from": 1.5})


def _saved(image: Image.Image, pipeline) -> str:
    import tempfile

    path = tempfile.mkstemp(suffix=".png")[1]
    image.save(path)
    return path


def test_guidance_only_inside_its_interval(pipeline, tmp_path):
    import dataclasses

    from seed_core.samplers import flow_timesteps

    rows: list[int] = []
    hook = pipeline.dit.register_forward_hook(lambda _m, args, _out: rows.append(int(args[0].shape[0])))
    request = GenerateRequest("a red circle", num_images=2, seed=3, steps=6, guidance=5.0)
    full = pipeline.run(request)
    assert full.settings["guidance_interval"] == [0.0, 1.0] and rows == [4] * 6  # both branches, each step
    rows.clear()
    part = pipeline.run(dataclasses.replace(request, guidance_interval=(0.0, 0.9)))
    grid = flow_timesteps(6, part.settings["shift"])[:-1]  # the times the model is called at
    assert rows == [2 if t > 0.9 else 4 for t in grid.tolist()] and 2 in rows and 4 in rows
    assert part.settings["guidance_interval"] == [0.0, 0.9]
    assert _pixels(part.images[0]) != _pixels(full.images[0])
    # no step inside the interval: the conditional prediction alone, as guidance 1 gives it
    none = pipeline.run(dataclasses.replace(request, guidance_interval=(0.0, 1e-6)))
    plain = pipeline.run(dataclasses.replace(request, guidance=1.0))
    assert _pixels(none.images[1]) == _pixels(plain.images[1])
    # an edit's three branches (dual guidance) step down to one outside the interval too
    rows.clear()
    source = _saved(full.images[0], pipeline)
    pipeline.run(EditRequest("make it blue", image=source, steps=2, guidance_interval=(0.0, 1e-6)))
    assert rows == [1, 1]
    hook.remove()
    # the model's default comes from its pipeline config
    pipeline.config = dataclasses.replace(pipeline.config, guidance_interval=(0.2, 0.8))
    assert pipeline.run(GenerateRequest("x", steps=1)).settings["guidance_interval"] == [0.2, 0.8]
    from seed_dit.pipeline import PipelineConfig

    with pytest.raises(ConfigError, match="guidance_interval must be"):
        PipelineConfig.from_dict({"guidance_interval": [0.9, 0.1]})
    with pytest.raises(InvalidRequestError, match="guidance interval must be LOW,HIGH"):
        pipeline.run(GenerateRequest("x", guidance_interval=(0.5, 0.5)))


def test_edits_take_their_own_default_guidance(pipeline, tmp_path):
    """A model may edit at another text guidance than it draws at (seedream-mini: 3 and 4): a request
    that names none gets its task's default, one that names a scale gets it for either task."""
    import dataclasses

    from seed_dit.pipeline import PipelineConfig

    pipeline.config = dataclasses.replace(pipeline.config, default_guidance=2.0, default_edit_guidance=9.0)
    drawn = pipeline.run(GenerateRequest("a red circle", steps=2, seed=1))
    assert _pixels(drawn.images[0]) == _pixels(
        pipeline.run(GenerateRequest("a red circle", steps=2, seed=1, guidance=2.0)).images[0]
    )
    assert drawn.settings["guidance"] == 2.0  # an output records the scale it was made at, default or not
    source = _saved(drawn.images[0], pipeline)
    edited = pipeline.run(EditRequest("make it blue", image=source, steps=1))
    assert (edited.settings["guidance"], edited.settings["image_guidance"]) == (
        9.0,
        pipeline.config.default_image_guidance,
    )

    def edit(**kw):
        return _pixels(
            pipeline.run(EditRequest("make it blue", image=source, steps=2, seed=1, **kw)).images[0]
        )

    assert edit() == edit(guidance=9.0) != edit(guidance=2.0)
    pipeline.config = dataclasses.replace(pipeline.config, default_edit_guidance=None)
    assert pipeline.edit_guidance == 2.0 and edit() == edit(guidance=2.0)
    with pytest.raises(ConfigError, match="default_edit_guidance must be >= 0"):
        PipelineConfig.from_dict({"default_edit_guidance": -1.0})
    assert PipelineConfig.from_dict({"default_edit_guidance": 4.0}).default_edit_guidance == 4.0
