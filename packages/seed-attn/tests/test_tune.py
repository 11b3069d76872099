"""`seed tune`: training with a PARO plan's masks in the loop, on the tiny random Seedream (CPU)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from typer.testing import CliRunner

from seed_attn import ops
from seed_attn.sparse import BlockLists
from seed_cli.main import create_app
from seed_core.attention import exact_attention
from seed_core.pipeline import load
from seed_core.requests import GenerateRequest

PROMPTS = ["a red circle", "two blue squares", "a green star", "a yellow hexagon", "three triangles", "a cat"]


def test_the_differentiable_path_is_the_ops_16_bit_attention():
    torch.manual_seed(0)
    b, h, n, d = 2, 3, 150, 16
    q, k, v = (torch.randn(b, h, n, d, requires_grad=True) for _ in range(3))
    table = torch.rand(h, 3, 3) < 0.5
    table[:, torch.arange(3), torch.arange(3)] = True  # every query block keeps one
    lists = BlockLists.from_mask(table, 64)
    perm = torch.stack([torch.randperm(n) for _ in range(h)])
    keys = torch.ones(b, 1, 1, n, dtype=torch.bool)
    keys[0, ..., -7:] = False  # padding keys of the first sample
    want = ops.sparse_attention(q.detach(), k.detach(), v.detach(), lists, perm=perm, mask=keys)
    got = ops.masked_attention(q, k, v, lists, perm=perm, mask=keys)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    got.square().sum().backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in (q, k, v))


@pytest.fixture()
def model_dir(seed_registry_factory, tmp_path):
    """The tiny random Seedream as a model directory, drafting at 128 px, with a plan at 256 px."""
    from seed_attn.calibrate import calibrate

    seed_registry_factory(entry_points=True, env={})
    pipeline = load("seedream-tiny-random")
    pipeline.config = dataclasses.replace(pipeline.config, draft_side=128, default_steps=4)
    src = tmp_path / "tiny"
    pipeline.save_pretrained(src)
    (src / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    calibrate(str(src), size=(256, 256), prompts=PROMPTS[:2], steps=4)
    return src


def test_tuning_lowers_the_error_under_the_masks_and_leaves_the_draft_alone(model_dir, tmp_path):
    out = tmp_path / "tuned"
    args = ["tune", "-m", str(model_dir), "--accel", "paro:density=0.3", "--size", "256x256", "-o", str(out),
            "--count", "6", "--held", "2", "--steps", "30", "--batch", "4", "--lr", "1e-4"]  # fmt: skip
    result = CliRunner().invoke(create_app(), args)
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in out.iterdir())
    assert files == [
        "16x16-t32-l288.backbone.safetensors",
        "16x16-t32-l288.json",
        "16x16-t32-l288.safetensors",
    ]
    from safetensors import safe_open

    with safe_open(str(out / files[0]), "pt") as f:
        record = json.loads(f.metadata()["seed_paro_tuned"])
    # the held-out prompts' calls: the tuned backbone under the masks is closer to exact attention
    assert record["held_error_after"] < 0.9 * record["held_error_before"], record
    assert record["steps"] == 30 and record["latent"] == [32, 32] and record["held_calls"] == 4
    assert not (tmp_path / "tuned.work").exists()

    plain = load(str(model_dir), accelerators=["paro:density=0.3"])
    tuned = load(str(model_dir), accelerators=[f"paro:plan={out},density=0.3"])
    untuned = load(str(model_dir), accelerators=[f"paro:plan={out},density=0.3,tuned=false"])
    assert list(tuned.paro_tuned) == [(32, 32)] and not hasattr(untuned, "paro_tuned")
    x = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 32, 32)  # a draft's latent, the plan's
    cond = tuned.distill_target(["a red circle"], (128, 128)).conditions(["a red circle"] * 2).full
    t = torch.full((2,), 0.5)
    with torch.no_grad():
        # the draft's size (at exact attention, as the pipeline runs it) goes to the model's own backbone;
        # the plan's size to the tuned one
        with exact_attention(tuned.dit), exact_attention(plain.dit):
            torch.testing.assert_close(tuned.dit(x[0], t, cond), plain.dit(x[0], t, cond))
        assert not torch.allclose(tuned.dit(x[1], t, cond), plain.dit(x[1], t, cond))
        torch.testing.assert_close(untuned.dit(x[1], t, cond), plain.dit(x[1], t, cond))
    image = tuned.run(GenerateRequest("a red circle", width=256, height=256, steps=4)).images[0]
    assert image.size == (256, 256)

    # stored as its difference from the model's backbone (`seed tune --delta-bits 8`): half the bytes, the
    # same calls, and only beside the model it was made from
    import shutil

    from seed_core.delta import load_weights, save_delta
    from seed_core.weights import save_safetensors

    small = tmp_path / "small"
    shutil.copytree(out, small)
    with safe_open(str(out / files[0]), "pt") as f:
        meta = f.metadata()
    save_delta(load_weights(out / files[0]), model_dir / "dit.safetensors", small / files[0], bits=8,
               metadata=meta, force=True)  # fmt: skip
    assert (small / files[0]).stat().st_size < 0.6 * (out / files[0]).stat().st_size
    compact = load(str(model_dir), accelerators=[f"paro:plan={small},density=0.3"])
    with torch.no_grad():
        torch.testing.assert_close(compact.dit(x[1], t, cond), tuned.dit(x[1], t, cond), atol=2e-3, rtol=1e-2)
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    weights = load_weights(other / "dit.safetensors")
    save_safetensors({k: v + 1e-3 for k, v in weights.items()}, other / "dit.safetensors", force=True)
    with pytest.raises(Exception, match="made from another dit.safetensors"):
        load(str(other), accelerators=[f"paro:plan={small},density=0.3"])
    again = CliRunner().invoke(create_app(), args)
    assert again.exit_code != 0 and "exists; pass --force" in again.output
    assert record["density"] == 0.3
    with pytest.warns(RuntimeWarning, match="was tuned for the masks of density=0.3; at other masks"):
        load(str(model_dir), accelerators=[f"paro:plan={out},density=0.5"])
    # a run that names no masks runs those the copy was tuned for; with a student's or quantized
    # backbone the copy does not apply, and the plan runs without it
    assert load(str(model_dir), accelerators=[f"paro:plan={out}"]).paro.density == 0.3
    quantized = load(str(model_dir), accelerators=["int8", f"paro:plan={out}"])
    assert not hasattr(quantized, "paro_tuned")  # the outputs' record says so
    assert quantized.accelerators[-1].options["tuned"] is False and tuned.accelerators[-1].options["tuned"]
    with pytest.raises(Exception, match="tuned=true: the plan's tuned backbone is a copy of the model's own"):
        load(str(model_dir), accelerators=["int8", f"paro:plan={out},tuned=true"])
    # a copy tuned for a schedule brings the schedule (its record's density may be None)
    import warnings

    from seed_core.weights import load_safetensors, read_metadata

    stored = read_metadata(small / files[0])  # the delta's record too
    record_s = {**json.loads(stored["seed_paro_tuned"]), "density": None, "schedule": [0.2, 0.4]}
    save_safetensors(load_safetensors(small / files[0]), small / files[0], force=True,
                     metadata={**stored, "seed_paro_tuned": json.dumps(record_s)})  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the masks it was tuned for: no warning
        scheduled = load(str(model_dir), accelerators=[f"paro:plan={small}"])
    assert scheduled.paro.schedule == (0.2, 0.4)
    assert scheduled.accelerators[-1].options["schedule"] == "0.2/0.4"
    with pytest.raises(Exception, match="tuned=true, but .* holds no backbone tuned for its plan"):
        load(str(model_dir), accelerators=["paro:tuned=true"])  # the model's own plan has no copy
    from seed_attn.calibrate import calibrate

    with pytest.raises(Exception, match="holds a backbone tuned for this plan's masks"):
        calibrate(str(model_dir), size=(256, 256), prompts=PROMPTS[:1], steps=4, out=out, force=True)


def test_a_stopped_tuning_resumes_where_an_uninterrupted_one_ends(model_dir, tmp_path):
    from seed_attn.tune import TuneConfig, record_calls, tune

    pipeline = load(str(model_dir))
    calls = record_calls(pipeline, PROMPTS, (256, 256))
    assert {tuple(c.x.shape[-2:]) for c in calls} == {(32, 32)}  # the refine's calls only, not the draft's
    accel = ["paro:density=0.3"]
    cfg = TuneConfig(steps=4, batch=2, lr=3e-3, held=2, checkpoint_every=2)
    whole = load(str(model_dir), accelerators=accel)
    tune(whole, calls, cfg, tmp_path / "a")
    first = load(str(model_dir), accelerators=accel)
    tune(first, calls, dataclasses.replace(cfg, steps=2), tmp_path / "b")  # stops (killed) after step 2
    resumed = load(str(model_dir), accelerators=accel)
    record = tune(resumed, calls, cfg, tmp_path / "b")
    assert record["steps"] == 4
    for (name, a), b in zip(whole.dit.state_dict().items(), resumed.dit.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_tune_refuses_bad_settings_before_any_work(model_dir, tmp_path):
    runner = CliRunner()
    for extra, message in (
        (["--steps", "0"], "--steps must be >= 1"),
        (["--lr", "0"], "--lr must be > 0"),
        (["--accel", "int8"], "seed tune fits a model to a PARO plan"),
        (["--delta-bits", "3"], "--delta-bits is 0 (float16), 8 or 4, got 3"),
    ):
        result = runner.invoke(
            create_app(), ["tune", "-m", str(model_dir), "-o", str(tmp_path / "o"), *extra]
        )
        assert result.exit_code != 0 and message in result.output, result.output
        assert not (tmp_path / "o.work").exists()
    (tmp_path / "o.work").mkdir()
    result = runner.invoke(create_app(), ["tune", "-m", str(model_dir), "-o", str(tmp_path / "o")])
    assert "holds an earlier run; pass --resume" in result.output
