"""The training recipe: a few steps at tiny size, killed after a checkpoint, resumed: the loss curve is the
same as an uninterrupted run's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seed_mini import train


def _losses(out: Path) -> dict[int, float]:
    """Loss per step; a resumed run logs the replayed steps again, and the last record wins."""
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records}


def test_vae_resumes_with_the_same_loss_curve(tmp_path):
    kwargs = {"steps": 6, "batch": 2, "preset": "tiny-f8", "checkpoint_every": 2, "log": lambda _: None}
    train.train_vae(tmp_path / "a", **kwargs)
    train.train_vae(tmp_path / "b", stop_after=3, **kwargs)  # "killed" one step after the step-2 checkpoint
    assert max(_losses(tmp_path / "b")) == 3
    train.train_vae(tmp_path / "b", **kwargs)
    a, b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert a.keys() == b.keys() == set(range(1, 7))
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-5, abs=1e-6), step
    assert (tmp_path / "a" / "vae.safetensors").exists() and (tmp_path / "a" / "vae.json").exists()


def test_dit_resumes_with_the_same_loss_curve_and_exports_a_model(tmp_path, seed_registry_factory):
    train.train_vae(tmp_path / "vae", steps=2, batch=2, preset="tiny-f8", log=lambda _: None)
    kwargs = {
        "steps": 4,
        "batch": 2,
        "preset": "tiny",
        "checkpoint_every": 2,
        "export_every": 4,
        "log": lambda _: None,
    }
    train.train_dit(tmp_path / "a", tmp_path / "vae", **kwargs)
    train.train_dit(tmp_path / "b", tmp_path / "vae", stop_after=3, **kwargs)
    train.train_dit(tmp_path / "b", tmp_path / "vae", **kwargs)
    a, b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert a.keys() == b.keys() == {1, 2, 3, 4}
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-5, abs=1e-6), step

    seed_registry_factory(entry_points=True, env={})  # the exported directory loads like any model
    from seed_core.pipeline import load
    from seed_core.requests import GenerateRequest

    pipeline = load(str(tmp_path / "a" / "model"))
    assert pipeline.spec.name == "seedream"
    assert pipeline.run(GenerateRequest("a red circle", steps=2)).images[0].size == (64, 64)


def test_mixed_resolutions_keep_the_token_count():
    sizes = {train.dit_batch(0, step, 32, resolutions=train.RESOLUTIONS).size for step in range(60)}
    assert sizes == {64, 128, 256}
    big = train.dit_batch(0, 0, 32, size=256)
    assert big.target.shape == (2, 3, 256, 256) and big.task == "generate" and not big.references
    assert train.parse_resolutions("64:0.5,256:0.5") == ((64, 0.5), (256, 0.5))
    for bad in ("64", "64:0.5", "60:1", "64:x"):
        with pytest.raises(ValueError, match="--resolutions"):
            train.parse_resolutions(bad)
