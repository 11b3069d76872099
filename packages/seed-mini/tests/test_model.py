"""The shipped seedream-mini and `seed eval`."""

from __future__ import annotations

import json

from PIL import Image
from typer.testing import CliRunner

from seed_cli.main import create_app
from seed_core.images import read_metadata
from seed_mini.plugin import WEIGHTS


def test_seedream_mini_is_shipped_small_and_the_default(seed_registry_factory, tmp_path, monkeypatch):
    files = [p for p in WEIGHTS.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {
        "config.json",
        "dit.safetensors",
        "vae.safetensors",
        "text_encoder.safetensors",
    }
    students = WEIGHTS / "seedream-mini" / "students"
    seedream = [p for p in files if WEIGHTS / "seedream-mini" in p.parents and students not in p.parents]
    assert sum(p.stat().st_size for p in seedream) < 25 * 2**20
    restorer = WEIGHTS / "seedvr2-mini"  # the other shipped model has its own budget
    assert sum(p.stat().st_size for p in restorer.iterdir()) < 16 * 2**20
    from seed_core.delta import delta_record, load_delta

    for student in students.iterdir():  # distilled students: their DiT's difference from the teacher's
        assert delta_record(student / "dit.safetensors") is not None, student.name
        assert sum(p.stat().st_size for p in student.iterdir()) < 5 * 2**20, student.name
    # every shipped delta file (students, the PARO plan's tuned copy) fits the shipped teacher: a new
    # dit.safetensors needs them stored again (training/seedream-mini/README.md)
    deltas = [p for p in files if p.suffix == ".safetensors" and delta_record(p) is not None]
    assert len(deltas) == 3
    for path in deltas:
        assert load_delta(path, WEIGHTS / "seedream-mini"), path
    registry = seed_registry_factory(entry_points=True, env={})
    spec = registry.models.get("seedream-mini")
    assert spec.family == "seedream" and registry.models.owner("seedream-mini") == "mini"

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        create_app(), ["generate", "a red circle left of a blue square", "-o", "out.png"]
    )
    assert result.exit_code == 0, result.output
    assert read_metadata("out.png")["model"] == "seedream-mini"
    with Image.open("out.png") as im:
        assert im.size == (64, 64)
    big = CliRunner().invoke(
        create_app(), ["generate", "a red circle", "--size", "128", "--steps", "2", "-o", "big.png"]
    )
    assert big.exit_code == 0, big.output
    settings = read_metadata("big.png")["settings"]  # drawn at 64 px, refined at 128 from t = 0.5
    assert settings["draft"] == [64, 64] and settings["refine_from"] == 0.5 and settings["width"] == 128


def test_eval_quick_writes_the_table_and_json(seed_registry_factory, tmp_path):
    seed_registry_factory(entry_points=True, env={})
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(
        create_app(), ["eval", "-m", "toy-gradient", "--quick", "--steps", "2", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "prompt accuracy: single" in result.output and "edit preservation" in result.output
    data = json.loads(out.read_text())
    assert data["suite_version"] == 2 and data["model"] == "toy-gradient"
    assert sum(n for _, n in data["edit"]["by_op"].values()) == data["edit"]["cases"] > 0
    assert set(data["prompt_accuracy"]) == {"single", "relation", "counting", "background", "single@256"}
    for value in [*data["prompt_accuracy"].values(), data["edit"]["success"], data["compose"]["success"]]:
        assert 0.0 <= value <= 1.0
    # a model that draws no shapes gets no prompt right, case by case too
    assert data["prompt_accuracy"]["single"] == 0.0
    assert data["outcomes"]["single"] == "0" * data["prompt_cases"]["single"]
    assert len(data["outcomes"]["edit"]) == data["edit"]["cases"] and data["diversity_version"] == 2
    # and its images are far from the world's: the Fréchet distance is well above a fresh draw's
    assert "Fréchet distance" in result.output
    assert data["frechet"]["distance"] > 3 * data["frechet"]["floor"] > 0
    again = CliRunner().invoke(create_app(), ["eval", "-m", "toy-gradient", "--quick", "--json", str(out)])
    assert again.exit_code == 1 and "already exists" in again.output


def test_eval_at_several_seeds_pools_them(seed_registry_factory, tmp_path):
    seed_registry_factory(entry_points=True, env={})
    out = tmp_path / "eval.json"
    args = ["eval", "-m", "toy-gradient", "--quick", "--steps", "1", "--size", "64", "--seed", "3"]
    result = CliRunner().invoke(create_app(), [*args, "--seeds", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["pooled"]["seeds"] == [3, 10_003] and data["prompt_cases"]["single"] == 12
    assert "mean of four, seeds 3, 10003" in result.output
    bad = CliRunner().invoke(create_app(), [*args, "--seeds", "0"])
    assert bad.exit_code == 2 and "--seeds must be >= 1" in bad.output


def test_eval_records_the_sampler_and_refuses_an_unknown_one(seed_registry_factory, tmp_path):
    seed_registry_factory(entry_points=True, env={})
    out = tmp_path / "eval.json"
    args = ["eval", "-m", "toy-gradient", "--quick", "--steps", "1", "--size", "64"]
    result = CliRunner().invoke(create_app(), [*args, "--sampler", "heun", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["settings"]["sampler"] == "heun"
    bad = CliRunner().invoke(create_app(), [*args, "--sampler", "nope"])
    assert bad.exit_code != 0 and "Unknown sampler 'nope'" in bad.output
    assert len(bad.output.strip().splitlines()) == 1


def test_eval_at_a_size_runs_the_text_to_image_suites(seed_registry_factory, tmp_path):
    seed_registry_factory(entry_points=True, env={})
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(
        create_app(),
        ["eval", "-m", "toy-gradient", "--quick", "--steps", "1", "--size", "128", "--json", str(out)],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["settings"]["size"] == 128 and data["edit"]["cases"] == data["compose"]["cases"] == 0
    assert "edit success" not in result.output and "at 128x128" in result.output


def test_shipped_students_load_by_name(seed_registry_factory, tmp_path, monkeypatch):
    seed_registry_factory(entry_points=True, env={})
    monkeypatch.chdir(tmp_path)
    for accel, steps in (("tscd:steps=4", 4), ("kd:steps=1", 1)):
        result = CliRunner().invoke(
            create_app(), ["generate", "a red circle", "--accel", accel, "-o", f"{steps}.png"]
        )
        assert result.exit_code == 0, result.output
        meta = read_metadata(f"{steps}.png")
        assert meta["settings"]["steps"] == steps and meta["accelerators"][0]["name"] == accel.split(":")[0]
        assert "Warning" not in result.output
    # other steps than the student's run as asked, with a warning (the metadata records what ran)
    result = CliRunner().invoke(
        create_app(), ["generate", "a red circle", "--accel", "kd:steps=1", "--steps", "2", "-o", "k2.png"]
    )
    assert result.exit_code == 0, result.output
    assert "Warning: --steps 2 samples the kd student, distilled for 1 step," in result.output
    assert read_metadata("k2.png")["settings"]["steps"] == 2


def test_the_shipped_autoencoder_gives_back_scenes_the_analyzer_reads():
    # the teacher cannot be read right where its decoder cannot redraw a scene: session 22 fine-tuned the
    # decoder (1,200-step autoencoder: 83% of scenes exact, 34.5 dB; after: 99%, 41.7 dB on 200 scenes)
    import math
    import random

    import torch

    from seed_mini import analyzer, metrics, world
    from seed_mini.train import load_vae

    vae = load_vae(WEIGHTS / "seedream-mini").eval()
    rng = random.Random(4242)
    scenes = [world.sample_scene(rng) for _ in range(40)]
    x = torch.stack([world.render(s, 64) for s in scenes])
    with torch.no_grad():
        y = (vae.decode(vae.encode(x * 2 - 1)).clamp(-1, 1) + 1) / 2
    exact = sum(metrics.scene_match(s, analyzer.analyze(img)) for s, img in zip(scenes, y, strict=True))
    psnr = -10 * math.log10(((y - x) ** 2).mean().item())
    assert exact >= 38 and psnr >= 38.0, (exact, psnr)


def test_eval_gives_its_image_guidance_to_the_edits(monkeypatch):
    from types import SimpleNamespace

    from PIL import Image

    from seed_core.requests import EditRequest
    from seed_mini import evaluate

    seen = []

    class Blank:  # a model that draws nothing, and remembers what it was asked
        default_steps, default_guidance, default_size = 1, 1.0, (64, 64)

        def run(self, request):
            seen.append(request)
            side = request.width or 64
            return SimpleNamespace(images=[Image.new("RGB", (side, side), "white")])

    monkeypatch.setattr(evaluate, "load", lambda *args, **kwargs: Blank())
    result = evaluate.evaluate("blank", quick=True, image_guidance=2.5)
    edits = [r for r in seen if isinstance(r, EditRequest)]
    assert len(edits) == result["edit"]["cases"] > 0 and {r.image_guidance for r in edits} == {2.5}
    assert result["settings"]["image_guidance"] == 2.5 and result["edit"]["success"] == 0.0


def test_an_error_after_the_progress_bar_is_one_line_with_nothing_before_it(seed_registry_factory, tmp_path):
    # rich's transient bar on a stderr that is no terminal left a blank line before the error
    seed_registry_factory(entry_points=True, env={})
    result = CliRunner().invoke(
        create_app(), ["generate", "a red circle", "--accel", "paro", "-o", str(tmp_path / "x.png")]
    )
    assert result.exit_code != 0
    assert result.output.startswith("Error: no PARO plan for this layout"), repr(result.output[:80])
    assert not (tmp_path / "x.png").exists()
