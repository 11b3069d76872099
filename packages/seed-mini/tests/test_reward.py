"""The shipped reward model of the shapes world: it prefers an image's own caption to the same caption
with one word changed, on fresh scenes, and its gradient reaches the pixels."""

from __future__ import annotations

import random

from seed_mini import reward, world


def test_mismatch_changes_one_attribute() -> None:
    rng = random.Random(0)
    assert reward.mismatch("a shape", rng) is None
    for text in ("a red circle left of a blue square", "two green triangles on a white background"):
        changed = reward.mismatch(text, rng)
        assert changed is not None and changed != text
        assert len(changed.split()) == len(text.split())


def test_shipped_model_ranks_matches_above_mismatches() -> None:
    model = reward.load()
    scores = reward.held_out(model, n=256, seed=123)  # scenes it was never trained on
    assert scores["accuracy"] > 0.75 and scores["hard_pairs_ranked"] > 0.7, scores


def test_reward_is_differentiable_in_the_image() -> None:
    model = reward.load()
    scene = world.sample_scene(random.Random(5), n_objects=1)
    image = (world.render_batch([scene]) * 2 - 1).requires_grad_(True)
    r = model(image, [world.caption(scene, random.Random(1))])
    r.sum().backward()
    assert image.grad is not None and float(image.grad.abs().sum()) > 0


def test_tiny_model_trains() -> None:
    model = reward.train(3, batch=4, preset="tiny", log=lambda _: None)
    images, prompts, labels = reward.training_batch(0, 0, 4)
    assert model(images, prompts).shape == labels.shape
