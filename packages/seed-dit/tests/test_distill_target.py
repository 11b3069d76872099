"""Seedream's side of the distillation protocol (seed_core.distill), without any method."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seed_core.errors import ConfigError
from seed_core.requests import GenerateRequest
from seed_core.specs import LoadOptions, ModelSpec
from seed_dit.distill import SeedreamDistillTarget
from seed_dit.pipeline import SeedreamPipeline, random_pipeline

SPEC = ModelSpec("seedream", "seedream", ("t2i", "edit", "compose"), lambda s, o: None)


@pytest.fixture
def pipeline() -> SeedreamPipeline:
    return random_pipeline(SPEC, LoadOptions())


@pytest.fixture
def target(pipeline: SeedreamPipeline) -> SeedreamDistillTarget:
    target = pipeline.distill_target(["a red circle", "two blue squares"])
    assert isinstance(target, SeedreamDistillTarget)
    return target


def test_conditions_noise_and_guided_velocity(target: SeedreamDistillTarget) -> None:
    gen = torch.Generator().manual_seed(0)
    cond = target.sample_conditions(3, gen)
    x = target.sample_noise(3, gen)
    assert x.shape == (3, target.teacher.cfg.in_channels, 8, 8)  # 64 px, VAE factor 8
    t = torch.full((3,), 0.7)
    c = target.velocity(target.teacher, x, t, cond)
    u = target.teacher(x, t, cond.null)
    guided = target.velocity(target.teacher, x, t, cond, 3.0)
    assert torch.allclose(guided, u + 3.0 * (c - u), atol=1e-5)


def test_features_are_image_tokens_at_three_depths(target: SeedreamDistillTarget) -> None:
    gen = torch.Generator().manual_seed(1)
    cond = target.sample_conditions(2, gen)
    x = target.sample_noise(2, gen)
    feats = target.features(target.teacher, x, torch.rand(2, generator=gen), cond)
    tokens = (8 // target.teacher.cfg.patch_size) ** 2
    assert [f.shape for f in feats] == [(2, tokens, d) for d in target.feature_dims()]
    assert len(feats) == len(target.depths) and target.depths[-1] == 2  # tiny: one dual + one single block


def test_guidance_student_starts_as_the_teacher_and_round_trips(
    pipeline: SeedreamPipeline, target: SeedreamDistillTarget, tmp_path: Path
) -> None:
    gen = torch.Generator().manual_seed(2)
    cond = target.sample_conditions(2, gen)
    x, t = target.sample_noise(2, gen), torch.rand(2, generator=gen)
    student = target.make_student(guidance_embed=True)
    assert target.embeds_guidance(student) and not target.embeds_guidance(target.teacher)
    with torch.no_grad():
        assert torch.allclose(
            target.velocity(student, x, t, cond, 4.0), target.velocity(target.teacher, x, t, cond)
        )
    target.save_student(student, tmp_path / "s", {"steps": 2, "guidance": 4.0})
    info = pipeline.load_student(tmp_path / "s")
    assert info["steps"] == 2 and pipeline.default_steps == 2 and pipeline.default_guidance == 4.0
    result = pipeline.run(GenerateRequest("a red circle", seed=0))
    assert result.settings["steps"] == 2 and result.images[0].size == (64, 64)


def test_bad_student_directories_are_refused(pipeline: SeedreamPipeline, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a distilled student"):
        pipeline.load_student(tmp_path)
    (tmp_path / "student.json").write_text('{"steps": 2}')
    with pytest.raises(ConfigError, match="missing 'dit'"):
        pipeline.load_student(tmp_path)


def test_real_data_and_prompt_hooks(target: SeedreamDistillTarget) -> None:
    """What adversarial post-training and reward terms need: captions -> conditions -> prompts, pixels ->
    latents at the training size (and back through the decoder)."""
    cond = target.conditions(["a red circle", "a blue square"])
    assert target.prompts(cond) == ["a red circle", "a blue square"]
    gen = torch.Generator().manual_seed(3)
    assert target.prompts(target.sample_conditions(4, gen))[0] in target.prompts_pool
    pixels = torch.rand(2, 3, 64, 64) * 2 - 1
    latents = target.encode(pixels)
    assert latents.shape == target.sample_noise(2, gen).shape
    assert target.decode(latents).shape == pixels.shape


def test_a_saved_student_loads_to_continue_and_a_foreign_one_is_refused(
    target: SeedreamDistillTarget, tmp_path: Path
) -> None:
    import dataclasses

    from seed_dit.model import MMDiT

    student = target.make_student(guidance_embed=True)
    with torch.no_grad():
        student.guidance_in.fc2.bias.fill_(0.25)  # type: ignore[union-attr]  # differs from the teacher
    target.save_student(student, tmp_path / "s", {"steps": 2})
    back = target.load_student(tmp_path / "s")
    assert target.embeds_guidance(back) and back.training
    assert all(p.requires_grad and p.dtype == torch.float32 for p in back.parameters())
    for key, value in student.state_dict().items():
        assert torch.allclose(value, back.state_dict()[key], atol=1e-3), key  # fp16 on disk
    deeper = MMDiT(
        dataclasses.replace(target.teacher.cfg, single_blocks=target.teacher.cfg.single_blocks + 1)
    )
    target.save_student(deeper, tmp_path / "w", {"steps": 2})
    with pytest.raises(ConfigError, match="differs from the teacher's \\(single_blocks: "):
        target.load_student(tmp_path / "w")
