"""diffusers pipelines as Seed backbones: same output as diffusers, accelerators, CLI, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seed_core.errors import AcceleratorError
from seed_core.images import read_metadata
from seed_core.pipeline import load
from seed_diffusers.testing import FRAMES, SIZE, diffusers_output, psnr

FAMILIES = ("sd3", "flux", "wan")


def _reference(path: Path, family: str, **kw) -> np.ndarray:  # type: ignore[no-untyped-def]
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(path), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return diffusers_output(pipe, family, **kw)


@pytest.mark.parametrize("family", FAMILIES)
def test_routed_pipeline_gives_diffusers_own_output(tiny: dict[str, Path], family: str) -> None:
    pipeline = load(f"diffusers:{tiny[family]}")
    assert pipeline.routed >= 1 and pipeline.spec.tasks == (("t2v",) if family == "wan" else ("t2i",))
    assert np.array_equal(diffusers_output(pipeline.pipe, family), _reference(tiny[family], family))


@pytest.mark.parametrize("family", FAMILIES)
def test_attention_accelerators_against_diffusers(clone, family: str) -> None:  # type: ignore[no-untyped-def]
    from seed_attn.calibrate import calibrate

    path = clone(family)
    reference = _reference(path, family)
    calibrate(f"diffusers:{path}", size=(SIZE, SIZE), prompts=["a red circle"], steps=2, frames=FRAMES)
    # full density at 16 bits (reordered, block by block) and dense FlexAttention: diffusers' output
    for accel in ("paro:density=1,bits=16", "flex"):
        out = diffusers_output(load(f"diffusers:{path}", accelerators=[accel]).pipe, family)
        assert np.abs(out - reference).max() < 1e-4, accel
    int8 = diffusers_output(load(f"diffusers:{path}", accelerators=["int8-attn"]).pipe, family)
    assert 35 < psnr(int8, reference) < float("inf")
    sparse = diffusers_output(
        load(f"diffusers:{path}", accelerators=["paro:density=0.3,bits=8"]).pipe, family
    )
    assert np.isfinite(sparse).all() and not np.array_equal(sparse, reference)


@pytest.mark.parametrize("accel", ["int8", "w8a8", "int4"])
def test_weight_accelerators_quantize_the_linear_layers(tiny: dict[str, Path], accel: str) -> None:
    from seed_quant.quantize import quantized_layers

    reference = _reference(tiny["sd3"], "sd3")
    pipeline = load(f"diffusers:{tiny['sd3']}", accelerators=[accel])
    layers = quantized_layers(pipeline.pipe.transformer)
    assert layers and "proj_out" not in layers  # the sensitive output projection stays in full precision
    assert {"transformer", "text_encoder", "text_encoder_3"} <= set(pipeline.components())  # all reached
    assert not any(name.startswith("pos_embed") for name in layers)
    assert psnr(diffusers_output(pipeline.pipe, "sd3"), reference) > 20


def test_fp8_is_refused_with_the_reason_on_a_cpu(tiny: dict[str, Path]) -> None:
    with pytest.raises(AcceleratorError, match="fp8 needs a CUDA GPU"):
        load(f"diffusers:{tiny['flux']}", accelerators=["fp8"])


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_seed_generate_end_to_end(run, tiny: dict[str, Path], tmp_path: Path, family: str) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "x.png"
    args = [
        "generate",
        "a red circle",
        "-m",
        f"diffusers:{tiny[family]}",
        "--size",
        str(SIZE),
        "--steps",
        "2",
    ]
    negative = ["--negative", "blurry"] if family == "sd3" else []  # Flux refuses one (see below)
    result = run(*args, "-n", "2", "--seed", "5", "-g", "4", "-o", str(out), *negative)
    assert result.exit_code == 0, result.output
    meta = read_metadata(tmp_path / "x-1.png")
    assert meta["model"] == f"diffusers:{tiny[family]}" and meta["seed"] == 6
    assert meta["settings"]["steps"] == 2 and meta["settings"]["guidance"] == 4.0
    # image 1 of the batch is what seed 6 alone makes
    single = tmp_path / "single.png"
    assert run(*args, "--seed", "6", "-g", "4", "-o", str(single), *negative).exit_code == 0
    from PIL import Image

    a = np.asarray(Image.open(single), dtype=float)
    b = np.asarray(Image.open(tmp_path / "x-1.png"), dtype=float)
    assert np.abs(a - b).max() <= 1


def test_seed_video_end_to_end_and_generate_points_to_it(run, tiny: dict[str, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = f"diffusers:{tiny['wan']}"
    frames = tmp_path / "frames"
    result = run("video", "a red circle", "-m", model, "--size", "32", "--frames", "5", "--steps", "2",
                 "-o", str(frames))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(list(frames.glob("*.png"))) == FRAMES
    assert read_metadata(frames / "00000.png")["request"]["frames"] == FRAMES
    again = run("generate", "a red circle", "-m", model, "--size", "32", "-o", str(tmp_path / "x.png"))
    assert again.exit_code != 0 and "use `seed video`" in again.output


def test_bad_pipeline_folders_get_one_line(run, clone, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def error(model: str) -> str:
        result = run("generate", "a red circle", "-m", model, "-o", str(tmp_path / "x.png"))
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1, result.output
        return lines[0]

    assert "not a diffusers pipeline (no model_index.json)" in error(f"diffusers:{tmp_path}")
    assert "does not exist" in error(f"diffusers:{tmp_path / 'nothing'}")
    unsupported = clone("sd3")
    index = json.loads((unsupported / "model_index.json").read_text())
    (unsupported / "model_index.json").write_text(json.dumps({**index, "_class_name": "KandinskyPipeline"}))
    line = error(f"diffusers:{unsupported}")
    assert "KandinskyPipeline is not supported" in line and "FluxPipeline" in line
    missing = clone("flux")
    import shutil

    shutil.rmtree(missing / "vae")
    assert "needs the component 'vae'" in error(f"diffusers:{missing}")
    assert "use -m diffusers:" in error(str(missing))
    experts = clone("wan")
    index = json.loads((experts / "model_index.json").read_text())
    index["transformer_2"] = ["diffusers", "WanTransformer3DModel"]
    (experts / "model_index.json").write_text(json.dumps(index))
    assert "two-expert Wan 2.2 pipelines" in error(f"diffusers:{experts}")
    corrupt = clone("sd3")
    weights = next((corrupt / "transformer").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    assert "diffusers cannot load this pipeline" in error(f"diffusers:{corrupt}")


def test_requests_a_diffusers_pipeline_cannot_serve_are_refused(tiny: dict[str, Path]) -> None:
    from seed_core.errors import InvalidRequestError
    from seed_core.requests import GenerateRequest, VideoRequest

    pipeline = load(f"diffusers:{tiny['flux']}")
    with pytest.raises(InvalidRequestError, match="not a multiple of 2"):
        pipeline.run(GenerateRequest("a cat", width=33, height=32, steps=1))
    with pytest.raises(InvalidRequestError, match="ignores a negative prompt"):
        pipeline.run(GenerateRequest("a cat", negative_prompt="a dog", width=32, height=32))
    with pytest.raises(InvalidRequestError, match="own scheduler"):
        pipeline.run(GenerateRequest("a cat", width=32, height=32, sampler="heun"))
    wan = load(f"diffusers:{tiny['wan']}")
    with pytest.raises(InvalidRequestError, match="4n \\+ 1"):
        wan.run(VideoRequest("a cat", width=32, height=32, frames=6))


@pytest.mark.parametrize("family", FAMILIES)
def test_distill_target_samples_like_diffusers(tiny: dict[str, Path], family: str) -> None:
    """The protocol's Euler steps with the target's velocity reproduce diffusers' latents (same noise,
    same sigmas, CFG included): conditioning, time scale and packing are diffusers' own."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from seed_core.samplers import flow_timesteps
    from seed_diffusers.pipeline import _student_grid

    pipeline = load(f"diffusers:{tiny[family]}")
    target = pipeline.distill_target(["a red circle"], (SIZE, SIZE))
    if family == "wan":  # Wan samples with UniPC; compare single Euler steps at the same shift
        assert target.shift == pipeline.pipe.scheduler.config.flow_shift
        pipeline.pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=target.shift)
    cond = target.conditions(["a red circle"])
    latent = (16, 2, 4, 4) if family == "wan" else target.latent
    x = torch.randn((1, *latent), generator=torch.Generator().manual_seed(5))
    guidance = 1.0 if family == "flux" else 2.0
    grid = flow_timesteps(2, target.shift)
    z = x.clone()
    with torch.no_grad():
        for i in range(2):
            z = z + (grid[i + 1] - grid[i]) * target.velocity(
                target.teacher, z, grid[i].expand(1), cond, guidance
            )
    given = x
    if family == "flux":  # the pipeline takes packed latents
        b, c, h, w = x.shape
        given = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * 4)
    # Flux-dev's guidance is the transformer's input: the target gives it the family default, not CFG
    embedded = pipeline.family.default_guidance if family == "flux" else guidance
    kwargs = dict(
        height=SIZE, width=SIZE, num_inference_steps=2, guidance_scale=embedded, output_type="latent"
    )
    if family == "wan":
        kwargs["num_frames"] = FRAMES
    with _student_grid(pipeline.pipe.scheduler, [1.0, 0.5]):
        out = pipeline.pipe("a red circle", latents=given, **kwargs)
    ref = out.frames if family == "wan" else out.images
    if family == "flux":
        b, c, h, w = x.shape
        ref = ref.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)
    assert torch.allclose(ref.float(), z, atol=1e-4), float((ref.float() - z).abs().max())
    features = target.features(target.teacher, x, grid[:1].expand(1), cond)
    assert [f.shape[-1] for f in features] == target.feature_dims()


@pytest.mark.parametrize("family", FAMILIES)
def test_distilled_student_loads_and_runs_in_diffusers(run, clone, tmp_path: Path, family: str) -> None:  # type: ignore[no-untyped-def]
    from diffusers import DiffusionPipeline

    teacher = clone(family)
    (teacher / "prompts.txt").write_text("a red circle\na blue square left of a green star\n")
    out = tmp_path / "run"
    args = ["--method", "dmd2", "--steps", "2", "--student-steps", "2", "--batch", "2", "--ratio", "1"]
    result = run("distill", "--teacher", f"diffusers:{teacher}", *args, "--size", "32x32", "-o", str(out))
    assert result.exit_code == 0, result.output
    student = out / "student"
    info = json.loads((student / "student.json").read_text())
    assert info["steps"] == 2 and info["sigmas"] == [1.0, 0.5] and info["family"] == family
    assert info["guidance"] == (3.5 if family == "flux" else 1.0)  # Flux-dev's embedded guidance
    assert (
        json.loads((student / "model_index.json").read_text())["scheduler"][1]
        == "FlowMatchEulerDiscreteScheduler"
    )

    # diffusers itself loads the folder and runs the student (on its grid where the call takes sigmas)
    pipe = DiffusionPipeline.from_pretrained(str(student), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(1)
    kwargs: dict = dict(
        height=SIZE, width=SIZE, guidance_scale=info["guidance"], generator=generator, output_type="np"
    )
    if family == "wan":
        frames = pipe("a red circle", num_inference_steps=2, num_frames=FRAMES, **kwargs).frames[0]
        assert frames.shape == (FRAMES, SIZE, SIZE, 3) and np.isfinite(frames).all()
    else:
        theirs = pipe("a red circle", num_inference_steps=2, sigmas=info["sigmas"], **kwargs).images[0]
        assert np.isfinite(theirs).all()
    # ... and Seed runs the same student, by folder and as a step accelerator on the teacher
    by_folder = load(f"diffusers:{student}")
    assert by_folder.default_steps == 2 and by_folder.default_guidance == info["guidance"]
    request = by_folder.text_request("a red circle", width=SIZE, height=SIZE, seed=1, frames=FRAMES)

    def pixels(pipeline) -> np.ndarray:  # type: ignore[no-untyped-def]
        result = pipeline.run(request)
        return np.asarray(result.videos[0] if result.videos else result.images[0], dtype=float) / 255

    a = pixels(by_folder)
    with pytest.raises(AcceleratorError, match="made by 'dmd2'"):
        load(f"diffusers:{teacher}", accelerators=[f"adm:steps=2,path={out}"])
    b = pixels(load(f"diffusers:{teacher}", accelerators=[f"dmd2:steps=2,path={out}"]))
    assert np.abs(a - b).max() <= 1 / 255 + 1e-6
    if family != "wan":
        assert np.abs(a - theirs).max() <= 1 / 255 + 1e-6
    # the student moved away from the teacher (it was trained)
    original = load(f"diffusers:{teacher}").pipe.transformer.state_dict()
    trained = by_folder.pipe.transformer.state_dict()
    assert any(not torch.equal(original[k], trained[k]) for k in original)
