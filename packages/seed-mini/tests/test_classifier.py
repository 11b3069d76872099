"""The shipped world classifier and the Fréchet distance on its features."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from seed_mini import classifier, world


def test_frechet_distance_of_gaussians():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 6, generator=gen)
    assert classifier.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = torch.tensor([1.0, 2.0, 0, 0, 0, 0])
    b = torch.randn(4000, 6, generator=gen) + shift
    # two unit Gaussians whose means differ by `shift`: the distance is |shift|^2 = 5 (plus sampling noise)
    assert classifier.frechet_distance(a, b) == pytest.approx(5.0, abs=0.3)
    assert classifier.frechet_distance(a, b) == pytest.approx(classifier.frechet_distance(b, a), rel=1e-6)
    c = torch.randn(4000, 6, generator=gen) * 2  # variance 4 per axis: (2 - 1)^2 per axis = 6
    assert classifier.frechet_distance(a, c) == pytest.approx(6.0, rel=0.1)
    with pytest.raises(ValueError, match="at least 2"):
        classifier.frechet_distance(a[:1], b)


def test_a_tiny_classifier_trains_and_round_trips(tmp_path):
    model = classifier.train(3, batch=4, preset="tiny", log=lambda _: None)
    classifier.save(model, tmp_path)
    loaded = classifier.load(tmp_path)
    images = world.render_batch([world.sample_scene(random.Random(i)) for i in range(3)], 96)
    assert classifier.features(images, loaded).shape == (3, 16)  # any size is resized to 64 px


def test_the_shipped_classifier_reads_scenes():
    accuracy = classifier.held_out_accuracy(classifier.load(), n=256)
    assert accuracy["shapes"] >= 0.95 and accuracy["colours"] >= 0.99, accuracy
    assert accuracy["count"] >= 0.95 and accuracy["background"] >= 0.99, accuracy


def _scenes(seed: int, n: int) -> list[world.Scene]:
    rng = random.Random(seed)
    return [world.sample_scene(rng) for _ in range(n)]


def test_frechet_distance_sees_collapse_and_wrong_shapes():
    reference = classifier.features(world.render_batch(_scenes(1, 192)))
    floor = classifier.frechet_distance(classifier.features(world.render_batch(_scenes(2, 192))), reference)
    circles = [
        dataclasses.replace(s, objects=tuple(dataclasses.replace(o, shape="circle") for o in s.objects))
        for s in _scenes(2, 192)
    ]
    collapsed = classifier.frechet_distance(classifier.features(world.render_batch(circles)), reference)
    one_mode = [_scenes(3, 1)[0]] * 192
    single = classifier.frechet_distance(classifier.features(world.render_batch(one_mode)), reference)
    assert collapsed > 3 * floor and single > 3 * floor, (floor, collapsed, single)
