"""Seedream's side of the distillation protocol (seed_core.distill), without any method."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
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
    pipeline.config = dataclasses.replace(pipeline.config, guidance_interval=(0.0, 0.9))
    info = pipeline.load_student(tmp_path / "s")
    assert pipeline.config.guidance_interval == (0.0, 1.0)  # a student is guided at each of its steps
    assert info["steps"] == 2 and pipeline.default_steps == 2 and pipeline.default_guidance == 4.0
    result = pipeline.run(GenerateRequest("a red circle", seed=0))
    assert result.settings["steps"] == 2 and result.images[0].size == (64, 64)
    teacher_scale = pipeline.config.default_image_guidance
    assert teacher_scale == 1.5  # a student without its own keeps the model's edit image guidance
    target.save_student(student, tmp_path / "e", {"steps": 2, "guidance": 4.0, "image_guidance": 2.5})
    pipeline.load_student(tmp_path / "e")
    assert pipeline.config.default_image_guidance == 2.5


def test_a_student_stored_as_a_delta_loads_beside_its_teacher(
    pipeline: SeedreamPipeline, target: SeedreamDistillTarget, tmp_path: Path
) -> None:
    """A shipped student may be its difference from the teacher's dit.safetensors in 4 bits
    (`seed_core.delta`): it loads through the model's directory, and against another teacher it is refused."""
    from seed_core.delta import save_delta
    from seed_core.errors import CheckpointMismatchError, CheckpointNotFoundError

    pipeline.save_pretrained(tmp_path / "model")
    student = target.make_student(guidance_embed=True)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.03 * p.detach().std().nan_to_num() * torch.randn_like(p))
    target.save_student(student, tmp_path / "full", {"steps": 2, "guidance": 4.0})
    target.save_student(student, tmp_path / "delta", {"steps": 2, "guidance": 4.0})
    teacher_file = tmp_path / "model" / "dit.safetensors"
    save_delta(student.state_dict(), teacher_file, tmp_path / "delta" / "dit.safetensors", bits=4, force=True)
    with pytest.raises(CheckpointNotFoundError, match="stored as a difference from dit.safetensors"):
        pipeline.load_student(tmp_path / "delta")  # a model built in code: no teacher file
    pipeline.source = str(tmp_path / "model")
    request = GenerateRequest("a red circle", seed=0, steps=2, guidance=4.0)
    teacher = np.asarray(pipeline.run(request).images[0], dtype=np.float32)
    pipeline.load_student(tmp_path / "full")
    full = np.asarray(pipeline.run(request).images[0], dtype=np.float32)
    pipeline.load_student(tmp_path / "delta")
    small = np.asarray(pipeline.run(request).images[0], dtype=np.float32)
    # the same image within the 4 bits of the difference, which is far from the teacher's
    assert np.abs(full - small).mean() < 0.2 * np.abs(full - teacher).mean()
    pipeline.source = str(tmp_path / "full")  # a directory with another dit.safetensors
    with pytest.raises(CheckpointMismatchError, match="made from another dit.safetensors"):
        pipeline.load_student(tmp_path / "delta")


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


def test_edit_conditions_follow_the_edit_sampler(pipeline: SeedreamPipeline, tmp_path: Path) -> None:
    """One Euler step (t 1 -> 0) through the target's edit conditions, at the teacher's text scale, lands
    where `pipeline.edit` with steps=1 lands: same three branches, the same dual guidance. The image-only
    and null branches differ (the null one has no source) and repeating the batch repeats every branch."""
    import dataclasses

    from PIL import Image

    from seed_core.images import from_pil
    from seed_core.requests import EditRequest

    # large scales, so a wrong branch or scale shows through the random model's small outputs; the edit's
    # own text scale apart from text-to-image's, as seedream-mini's config has it
    pipeline.config = dataclasses.replace(
        pipeline.config, default_guidance=2.0, default_edit_guidance=12.0, default_image_guidance=9.0
    )
    target = pipeline.distill_target(["a red circle"])
    pixels = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(0))
    source = Image.fromarray((pixels * 255).to(torch.uint8).numpy())
    source.save(tmp_path / "source.png")
    request = EditRequest(prompt="make the circle green", image=str(tmp_path / "source.png"), steps=1, seed=5)
    expected = from_pil(pipeline.edit(request).images[0])

    cond = target.edit_conditions(target.encode(from_pil(source)[None] * 2 - 1), ["make the circle green"])
    noise = torch.randn(1, *target.latent, generator=torch.Generator().manual_seed(5))

    def one_step(c: object, text_scale: float) -> torch.Tensor:
        v = target.velocity(target.teacher, noise, torch.ones(1), c, text_scale)
        return ((target.decode(noise - v)[0] + 1) / 2).clamp(0, 1)

    assert target.default_guidance_for(cond) == 12.0  # the edit's scale, not text-to-image's 2
    assert target.default_guidance_for(target.conditions(["a red circle"])) == 2.0
    assert (one_step(cond, 12.0) - expected).abs().max() <= 2 / 255  # uint8 rounding of the pipeline's image
    # the tolerance tells a wrong scale or branch apart: image scale 1, a null branch with the source, or
    # text-to-image's scale
    for wrong, scale in (
        (dataclasses.replace(cond, image_guidance=1.0), 12.0),
        (dataclasses.replace(cond, null=cond.image_only), 12.0),
        (cond, 2.0),
    ):
        assert (one_step(wrong, scale) - expected).abs().max() > 4 / 255

    assert cond.image_only is not None and cond.image_guidance == pipeline.config.default_image_guidance
    assert torch.equal(cond.image_only.references[0], cond.full.references[0])
    assert not cond.null.references[0].any()
    twice = target.repeat_conditions(cond, 2)
    assert twice.prompts == cond.prompts * 2 and twice.image_only is not None
    assert torch.equal(twice.null.text[1], cond.null.text[0])
    assert torch.equal(twice.image_only.references[0][1], cond.full.references[0][0])
    with pytest.raises(ConfigError, match="2 edit sources for 1 instructions"):
        target.edit_conditions(torch.cat([cond.full.references[0]] * 2), ["x"])


def test_features_of_an_edit_are_the_generated_image_tokens(target: SeedreamDistillTarget) -> None:
    """With a reference image the single blocks hold text, the image, then the reference: the features
    are the image's tokens (the model's own return_hidden agrees), not the reference's."""
    gen = torch.Generator().manual_seed(4)
    x, t = target.sample_noise(1, gen), torch.rand(1, generator=gen)
    cond = target.edit_conditions(target.sample_noise(1, gen), ["remove the square"])
    feats = target.features(target.teacher, x, t, cond)
    _, hidden = target.teacher(x, t, cond.full, return_hidden=target.depths[-1])
    assert torch.allclose(feats[-1], hidden.float(), atol=1e-6)


def test_edit_guidance_takes_one_scale_a_row(target: SeedreamDistillTarget) -> None:
    """CFG distillation draws a text scale per sample: row i of the batched edit velocity is the edit
    velocity of row i alone at its own scale."""
    gen = torch.Generator().manual_seed(6)
    x, t = target.sample_noise(2, gen), torch.rand(2, generator=gen)
    cond = target.edit_conditions(target.sample_noise(2, gen), ["make it red", "remove the square"])
    scales = torch.tensor([1.5, 5.0])
    both = target.velocity(target.teacher, x, t, cond, scales)
    for i in range(2):
        one = target.edit_conditions(cond.full.references[0][i : i + 1], [cond.prompts[i]])
        alone = target.velocity(target.teacher, x[i : i + 1], t[i : i + 1], one, float(scales[i]))
        torch.testing.assert_close(both[i : i + 1], alone, atol=1e-5, rtol=1e-4)


def test_the_teacher_is_guided_only_inside_its_guidance_interval(pipeline: SeedreamPipeline) -> None:
    """Distillation sees the teacher as its sampler runs it: guided below the interval's top, the
    conditional branch alone above it (no image guidance either for an edit), one decision a row."""
    pipeline.config = dataclasses.replace(pipeline.config, guidance_interval=(0.0, 0.6))
    target = pipeline.distill_target(["a red circle", "two blue squares"])
    assert target.guidance_interval == (0.0, 0.6)
    gen = torch.Generator().manual_seed(7)
    x = target.sample_noise(2, gen)
    edit = target.edit_conditions(target.sample_noise(2, gen), ["make it red", "remove the square"])
    for cond in (target.sample_conditions(2, gen), edit):
        t = torch.tensor([0.9, 0.3])
        mixed = target.teacher_velocity(x, t, cond, 4.0)
        unguided = target.teacher(x, t, cond.full).float()
        guided = target.velocity(target.teacher, x, t, cond, 4.0)
        assert not torch.allclose(guided[0], unguided[0], atol=1e-3)  # guidance changes the velocity
        torch.testing.assert_close(mixed[0], unguided[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(mixed[1], guided[1], atol=1e-5, rtol=1e-4)
    # each row runs its own branches only, as the sampler would: the guided row its 2 (3 for an edit),
    # the row above the interval 1; and a per-row guidance scale follows its row
    rows: list[int] = []
    hook = target.teacher.register_forward_pre_hook(lambda _m, args: rows.append(args[0].shape[0]))
    try:
        for cond, branches in ((target.sample_conditions(2, gen), 2), (edit, 3)):
            rows.clear()
            scales = torch.tensor([2.0, 5.0])
            mixed = target.teacher_velocity(x, t, cond, scales)
            assert sum(rows) == branches + 1, rows
            one = target.select_conditions(cond, torch.tensor([1]))
            torch.testing.assert_close(
                mixed[1:], target.velocity(target.teacher, x[1:], t[1:], one, 5.0), atol=1e-5, rtol=1e-4
            )
    finally:
        hook.remove()
    pipeline.config = dataclasses.replace(pipeline.config, guidance_interval=(0.0, 1.0))
    everywhere = pipeline.distill_target(["a red circle"])
    cond = everywhere.sample_conditions(2, gen)
    torch.testing.assert_close(
        everywhere.teacher_velocity(x, t, cond, 4.0), everywhere.velocity(everywhere.teacher, x, t, cond, 4.0)
    )
