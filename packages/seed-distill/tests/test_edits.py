"""Distillation with instruction edits (`seed distill --edits DIR`): on a tiny Seedream, a TSCD student
trained on edit batches moves toward the teacher's guided edit trajectories, and the command refuses
what does not fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from seed_core.distill import DistillTarget
from seed_core.errors import UsageError
from seed_core.samplers import flow_timesteps
from seed_distill import losses as L
from seed_distill.api import distill_model
from seed_distill.data import RealData, encode_folder
from seed_distill.methods import Options
from seed_distill.trainer import RunConfig

MODEL = "seedream-tiny-random"


@pytest.fixture(scope="module")
def edits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight sources (a coloured square on a background) with instructions, as an image folder."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("edits")
    gen = torch.Generator().manual_seed(0)
    lines = []
    for i in range(8):
        image = torch.ones(64, 64, 3) * torch.rand(3, generator=gen)
        x, y = (int(v) for v in torch.randint(0, 40, (2,), generator=gen))
        image[y : y + 24, x : x + 24] = torch.rand(3, generator=gen)
        Image.fromarray((image * 255).to(torch.uint8).numpy()).save(folder / f"{i}.png")
        text = ("make it red", "remove the square")[i % 2]
        lines.append(json.dumps({"file_name": f"{i}.png", "text": text}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def _edit_error(target: DistillTarget, net: torch.nn.Module, data: RealData, steps: int) -> float:
    """MSE of the net's `steps`-step Euler edit against the teacher's 4-step one, same noise and edits."""
    gen = torch.Generator().manual_seed(7)
    cond = target.edit_conditions(*data.batch(8, gen))
    noise = target.sample_noise(8, gen)
    ends = []
    for model, n, w in ((target.teacher, 4, target.default_guidance_for(cond)), (net, steps, 1.0)):
        x, grid = noise, flow_timesteps(n, target.shift)
        with torch.no_grad():
            for i in range(n):
                t, s = grid[i].expand(8), grid[i + 1].expand(8)
                x = L.euler_jump(x, t, target.velocity(model, x, t, cond, w), s)
        ends.append(x)
    return float((ends[0] - ends[1]).pow(2).mean())


def test_tscd_on_edits_learns_the_teachers_edit_jumps(edits: Path, tmp_path: Path) -> None:
    """The student's 2-step edits move toward the teacher's 4-step ones when it trains on edits, and do
    not when it trains on prompts only (the same run without --edits: the edits stay as bad or worse)."""
    from seed_core.pipeline import load

    pipeline = load(MODEL)
    target = pipeline.distill_target(["a red circle"])
    data = encode_folder(target, edits, (64, 64))
    before = _edit_error(target, target.teacher, data, 2)  # the teacher itself in 2 steps
    after = {}
    for share in (1.0, 0.0):
        path = distill_model(
            pipeline,
            tmp_path / str(share),
            method="tscd",
            prompts=["a red circle", "two blue squares"],
            options=Options(steps=2, teacher_steps=4, lr=5e-4, edit_share=share, tscd_points="starts"),
            edits=edits if share else None,
            run=RunConfig(steps=24, batch=2, ema=0.0, checkpoint_every=1000),
        )
        after[share] = _edit_error(target, target.load_student(path), data, 2)
    assert after[1.0] < 0.6 * before and after[1.0] < 0.6 * after[0.0], (before, after)
    info = json.loads((tmp_path / "1.0" / "student" / "student.json").read_text())
    assert info["edits"] == str(edits) and info["options"]["edit_share"] == 1.0


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"method": "adm"}, "--edits is read by cfg and tscd only"),
        ({"method": "tscd", "options": Options(edit_share=1.5)}, "--edit-share is a share .* got 1.5"),
    ],
)
def test_edits_that_do_not_fit_are_refused(edits: Path, tmp_path: Path, kw: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        distill_model(MODEL, tmp_path, prompts=["a"], edits=edits, **kw)


def test_an_edit_share_without_edits_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--edit-share needs edit sources: --edits DIR"):
        distill_model(MODEL, tmp_path, method="tscd", prompts=["a"], options=Options(edit_share=0.5))


def test_a_continued_student_keeps_its_edit_image_guidance(tmp_path: Path) -> None:
    """`--init` from a student whose student.json sets the edit image guidance it edits best at: the
    continuation records the same, and a pipeline using it edits at that scale by default."""
    from seed_core.pipeline import load

    pipeline = load(MODEL)
    run = RunConfig(steps=1, batch=1, ema=0.0, checkpoint_every=1000)
    first = distill_model(
        pipeline, tmp_path / "a", method="tscd", prompts=["a"], options=Options(steps=2), run=run
    )
    info = json.loads((first / "student.json").read_text())
    assert "image_guidance" not in info  # a fresh student leaves it to the teacher's default
    (first / "student.json").write_text(json.dumps({**info, "image_guidance": 2.75}))
    second = distill_model(
        pipeline, tmp_path / "b", method="tscd", prompts=["a"], options=Options(steps=2), run=run, init=first
    )
    assert json.loads((second / "student.json").read_text())["image_guidance"] == 2.75
    student = load(MODEL)
    student.load_student(second)
    assert student.config.default_image_guidance == 2.75 != load(MODEL).config.default_image_guidance


def test_a_damaged_student_json_is_one_line(tmp_path: Path) -> None:
    from seed_core.errors import AcceleratorError, UsageError
    from seed_core.pipeline import load

    run = RunConfig(steps=1, batch=1, ema=0.0, checkpoint_every=1000)
    student = distill_model(
        load(MODEL), tmp_path / "a", method="tscd", prompts=["a"], options=Options(steps=2), run=run
    )
    file = student / "student.json"
    info = json.loads(file.read_text())
    accel = [f"tscd:path={student},steps=2"]
    assert load(MODEL, accelerators=accel).config.default_steps == 2
    # each of these had ended in a traceback (JSONDecodeError, AttributeError, ValueError)
    for text, message in (
        ("{not json", "student.json: not valid JSON"),
        ("[1, 2]", "student.json: expected a JSON object"),
        (json.dumps({**info, "steps": "x"}), "student.json: steps must be a whole number >= 1"),
        (json.dumps({**info, "shift": -1}), "student.json: pipeline shift must be > 0"),
    ):
        file.write_text(text)
        with pytest.raises(UsageError, match=message):
            load(MODEL, accelerators=accel)
    with pytest.raises(AcceleratorError, match="steps=0; a student samples in 1 or more steps"):
        load(MODEL, accelerators=[f"tscd:path={student},steps=0"])
    # a model built in code has no folder of shipped students: no search of the working directory
    with pytest.raises(AcceleratorError, match=f"model '{MODEL}' ships no students; make one with"):
        load(MODEL, accelerators=["tscd:steps=2"])


def test_a_teacher_that_edits_at_its_own_scale_is_distilled_at_it(edits: Path, tmp_path: Path) -> None:
    """seedream-mini draws at guidance 3 and edits at 4: the teacher's edit micro-batches are guided at
    the edit scale unless --guidance names one for all, and a guidance-embedding student records both
    scales and samples edits at its own."""
    import dataclasses

    from seed_core.pipeline import load
    from seed_distill.methods import METHODS

    pipeline = load(MODEL)
    pipeline.config = dataclasses.replace(pipeline.config, default_guidance=2.0, default_edit_guidance=5.0)
    target = pipeline.distill_target(["a red circle"])
    data = encode_folder(target, edits, (64, 64))
    edit = target.edit_conditions(*data.batch(2, torch.Generator().manual_seed(0)))
    prompts = target.conditions(["a red circle", "a blue square"])
    for guidance, expected in ((None, (5.0, 2.0)), (3.0, (3.0, 3.0))):
        student = target.make_student(guidance_embed=True)
        method = METHODS["cfg"](target, student, Options(steps=2, guidance=guidance))
        assert (method.guidance_for(edit), method.guidance_for(prompts)) == expected
        assert method.student_guidance(edit) == expected[0]
    path = distill_model(
        pipeline,
        tmp_path / "cfg",
        method="cfg",
        prompts=["a red circle"],
        options=Options(steps=2, teacher_steps=2, edit_share=0.5),
        edits=edits,
        run=RunConfig(steps=1, batch=1, ema=0.0, checkpoint_every=1000),
    )
    info = json.loads((path / "student.json").read_text())
    assert (info["guidance"], info["edit_guidance"]) == (2.0, 5.0)
    student = load(MODEL)
    student.load_student(path)
    assert (student.config.default_guidance, student.edit_guidance) == (2.0, 5.0)
