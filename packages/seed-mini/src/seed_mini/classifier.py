"""A small classifier of shapes-world images, shipped with the package: its penultimate features give
`seed eval` a Fréchet distance (the FID of the shapes world), and it is trained on the world itself, so no
download is needed.

It reads a whole scene: which (shape, colour) pairs are present, which shapes, which colours, how many
objects and the background. Features trained to tell all of these apart move when a model draws the wrong
shape, smears colours or collapses to one mode, which is what the Fréchet distance should see.

    python -m seed_mini.classifier --steps 2000     # retrains and rewrites the shipped weights
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from seed_core.config import Config
from seed_mini import world

WEIGHTS = Path(__file__).parent / "weights" / "classifier"
INPUT_SIZE = 64


@dataclass(frozen=True)
class ClassifierConfig(Config):
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"channels": (8, 16), "feature_dim": 16},
        "mini": {"channels": (16, 32, 64, 96, 128), "feature_dim": 64},
    }

    channels: tuple[int, ...] = (16, 32, 64, 96, 128)
    feature_dim: int = 64


# the targets, all read from the scene's truth
PAIRS = [(s, c) for s in world.SHAPES for c in world.COLOURS]
HEADS = {"pairs": len(PAIRS), "shapes": len(world.SHAPES), "colours": len(world.COLOURS)}


class WorldClassifier(nn.Module):
    """Strided 3x3 convolutions, global average pool, a `feature_dim` embedding, then one linear head per
    target: multi-label presence of pairs / shapes / colours, and classes for the count and background."""

    def __init__(self, cfg: ClassifierConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        c_in = 3
        for i, c in enumerate(cfg.channels):
            layers += [
                nn.Conv2d(c_in, c, 3, stride=1 if i == 0 else 2, padding=1),
                nn.GroupNorm(8, c),
                nn.GELU(),
            ]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.embed = nn.Linear(2 * c_in, cfg.feature_dim)  # mean and max pooled
        self.presence = nn.Linear(cfg.feature_dim, sum(HEADS.values()))
        self.count = nn.Linear(cfg.feature_dim, 4)  # 1-4 objects
        self.background = nn.Linear(cfg.feature_dim, len(world.BACKGROUNDS))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1], any size -> (B, feature_dim)."""
        if images.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            images = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True)
        x = self.body((images * 2 - 1).contiguous(memory_format=torch.channels_last))
        # max pooling says whether something is anywhere (presence); mean pooling how much (count)
        return self.embed(torch.cat((x.mean(dim=(2, 3)), x.amax(dim=(2, 3))), dim=1))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = F.gelu(self.features(images))
        return self.presence(h), self.count(h), self.background(h)


def targets(scenes: list[world.Scene]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(presence (B, 62) in {0, 1}, count class (B,), background class (B,))."""
    shapes, colours, backgrounds = list(world.SHAPES), list(world.COLOURS), list(world.BACKGROUNDS)
    presence = torch.zeros(len(scenes), sum(HEADS.values()))
    for i, scene in enumerate(scenes):
        for o in scene.objects:
            presence[i, PAIRS.index((o.shape, o.colour))] = 1
            presence[i, HEADS["pairs"] + shapes.index(o.shape)] = 1
            presence[i, HEADS["pairs"] + HEADS["shapes"] + colours.index(o.colour)] = 1
    count = torch.tensor([len(s.objects) - 1 for s in scenes])
    background = torch.tensor([backgrounds.index(s.background) for s in scenes])
    return presence, count, background


def training_batch(seed: int, step: int, batch: int) -> tuple[torch.Tensor, list[world.Scene]]:
    """Fresh scenes (a pure function of seed and step), with a random blur on a third of them so that the
    features also behave on the softer images that generators draw."""
    rng = random.Random(seed * 1_000_003 + step)
    scenes = [
        world.sample_counting_scene(rng) if rng.random() < 0.15 else world.sample_scene(rng)
        for _ in range(batch)
    ]
    images = world.render_batch(scenes)
    blur = torch.tensor([rng.random() < 0.33 for _ in scenes])
    if blur.any():
        soft = F.avg_pool2d(images[blur], 3, stride=1, padding=1, count_include_pad=False)
        images[blur] = soft
    return images, scenes


def loss_and_accuracy(
    model: WorldClassifier, images: torch.Tensor, scenes: list[world.Scene]
) -> tuple[torch.Tensor, float]:
    presence, count, background = targets(scenes)
    p, c, b = model(images)
    loss = (
        F.binary_cross_entropy_with_logits(p, presence, reduction="sum") / len(scenes)
        + F.cross_entropy(c, count)
        + F.cross_entropy(b, background)
    )
    exact = ((p > 0) == (presence > 0.5)).all(dim=1) & (c.argmax(1) == count) & (b.argmax(1) == background)
    return loss, float(exact.float().mean())


def train(
    steps: int, *, batch: int = 64, lr: float = 2e-3, seed: int = 0, preset: str = "mini", log: Any = print
) -> WorldClassifier:
    torch.manual_seed(seed)
    model = WorldClassifier(ClassifierConfig.preset(preset)).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    for step in range(steps):
        images, scenes = training_batch(seed, step, batch)
        loss, acc = loss_and_accuracy(model, images, scenes)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 100 == 0:
            log(f"step {step + 1}/{steps}  loss {loss.item():.4f}  exact {acc:.1%}")
    return model.eval()


def held_out_accuracy(model: WorldClassifier, n: int = 512, seed: int = 99) -> dict[str, float]:
    """On fresh scenes: the accuracy of each kind of target, and the share of scenes read exactly."""
    images, scenes = training_batch(seed, 0, n)
    presence, count, background = targets(scenes)
    with torch.no_grad():
        p, c, b = model(images)
    right = (p > 0) == (presence > 0.5)
    pairs, shapes = HEADS["pairs"], HEADS["pairs"] + HEADS["shapes"]
    return {
        "pairs": float(right[:, :pairs].float().mean()),
        "shapes": float(right[:, pairs:shapes].float().mean()),
        "colours": float(right[:, shapes:].float().mean()),
        "count": float((c.argmax(1) == count).float().mean()),
        "background": float((b.argmax(1) == background).float().mean()),
        "exact": loss_and_accuracy(model, images, scenes)[1],
    }


def save(model: WorldClassifier, directory: Path) -> None:
    from seed_core.weights import save_safetensors

    directory.mkdir(parents=True, exist_ok=True)
    save_safetensors(model.state_dict(), directory / "classifier.safetensors", dtype="float16", force=True)
    model.cfg.to_json(directory / "config.json")


@functools.cache
def load(directory: Path = WEIGHTS) -> WorldClassifier:
    """The shipped classifier (float32, eval mode); cached, so a suite loads it once."""
    from seed_core.weights import load_model

    if not (directory / "config.json").is_file():
        raise FileNotFoundError(
            f"no classifier in {directory}; train one with `python -m seed_mini.classifier --steps 2000`"
        )
    cfg = ClassifierConfig.from_json(directory / "config.json")
    model = load_model(
        lambda: WorldClassifier(cfg), directory / "classifier.safetensors", dtype="float32", device="cpu"
    )
    return model.eval()


def features(images: torch.Tensor, model: WorldClassifier | None = None, chunk: int = 64) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> (N, feature_dim) float64 features of the shipped classifier."""
    model = model or load()
    with torch.no_grad():
        return torch.cat(
            [model.features(images[i : i + chunk].float()) for i in range(0, len(images), chunk)]
        ).double()


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2) between two (N, D) feature sets, in float64.

    tr((S_a S_b)^1/2) is the sum of the square roots of the eigenvalues of S_a S_b, which are real and
    non-negative for covariance matrices (numerical noise is clipped)."""
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("the Fréchet distance needs at least 2 samples per set")
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    eig = torch.linalg.eigvals(cov_a @ cov_b).real.clamp(min=0)
    return float((mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * eig.sqrt().sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m seed_mini.classifier",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--to", type=Path, default=WEIGHTS, help="directory to write (default: the package's)"
    )
    args = parser.parse_args(argv)
    model = train(args.steps, seed=args.seed)
    accuracy = held_out_accuracy(model)
    print("held-out accuracy: " + ", ".join(f"{k} {v:.1%}" for k, v in accuracy.items()))
    save(model, args.to)
    print(f"wrote {args.to}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
