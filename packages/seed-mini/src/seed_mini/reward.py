"""A differentiable reward model of the shapes world: how well an image fits its prompt.

It plays the role that ImageReward / HPSv3 play for real images in ReFL-style distillation (Hyper-SD,
Hyper-Bagel): `seed distill --reward seed-mini` adds a hinge ``relu(margin - r(image, prompt))`` to the
student's loss, and the gradient flows through r into the image. It is trained on the world itself: a
rendered scene with one of its captions is a match, the same scene with a caption changed in one word (a
colour, a shape, a number, the relation turned around, the background) is a hard mismatch, another scene's
caption an easy one.

Text: words hashed into a small table (no vocabulary file), two transformer layers, masked mean. Image:
strided 3x3 convolutions, each stage modulated by the text (FiLM), so "left of" can be checked where the
objects are; mean and max pooled into a logit: r = log-odds that image and prompt match.

    python -m seed_mini.reward --steps 3000      # retrains and rewrites the shipped weights
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from seed_core.config import Config
from seed_mini import world

WEIGHTS = Path(__file__).parent / "weights" / "reward"
INPUT_SIZE = 64
MAX_WORDS = 24


@dataclass(frozen=True)
class RewardConfig(Config):
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"channels": (8, 16), "dim": 16, "buckets": 64},
        "mini": {"channels": (32, 64, 96, 128), "dim": 64, "buckets": 512},
    }

    channels: tuple[int, ...] = (32, 64, 96, 128)  # every stage halves the side: 64 px -> 4 x 4
    dim: int = 64
    buckets: int = 512
    margin: float = 4.0  # the ReFL hinge's target reward (set from held-out matches after training)


def words(prompt: str) -> list[str]:
    return prompt.lower().replace(",", " ").split()[:MAX_WORDS]


def tokenize(
    prompts: list[str], buckets: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (B, MAX_WORDS), mask (B, MAX_WORDS)): crc32 of each word into `buckets - 1` slots; 0 pads."""
    ids = torch.zeros(len(prompts), MAX_WORDS, dtype=torch.long)
    for i, p in enumerate(prompts):
        for j, w in enumerate(words(p)):
            ids[i, j] = 1 + zlib.crc32(w.encode()) % (buckets - 1)
    return ids.to(device), (ids != 0).to(device)


class RewardModel(nn.Module):
    """(images (B, 3, H, W) in [-1, 1], prompts) -> (B,) match logits."""

    def __init__(self, cfg: RewardConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.embed = nn.Embedding(cfg.buckets, d)
        self.pos = nn.Parameter(torch.randn(MAX_WORDS, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.text = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.films = nn.ModuleList()
        c_in = 3
        for c in cfg.channels:
            self.convs.append(nn.Conv2d(c_in, c, 3, stride=2, padding=1))
            self.norms.append(nn.GroupNorm(8, c))
            self.films.append(nn.Linear(d, 2 * c))
            c_in = c
        self.head = nn.Sequential(nn.Linear(2 * c_in + d, 128), nn.GELU(), nn.Linear(128, 1))

    def encode_text(self, prompts: list[str], device: torch.device) -> torch.Tensor:
        ids, mask = tokenize(prompts, self.cfg.buckets, device)
        h = self.text(self.embed(ids) + self.pos, src_key_padding_mask=~mask)
        m = mask.float()[..., None]
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, d)

    def forward(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        if images.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            images = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True)
        text = self.encode_text(prompts, images.device)
        x = images
        for conv, norm, film in zip(self.convs, self.norms, self.films, strict=True):
            gamma, beta = film(text)[:, :, None, None].chunk(2, dim=1)
            x = F.gelu(norm(conv(x)) * (1 + gamma) + beta)
        pooled = torch.cat((x.mean(dim=(2, 3)), x.amax(dim=(2, 3)), text), dim=1)
        return self.head(pooled).squeeze(1)


# --- data -----------------------------------------------------------------------------------------------

_SWAPS: list[set[str]] = [
    set(world.COLOURS),
    set(world.SHAPES),
    {s + "s" for s in world.SHAPES},
    set(world.NUMBERS.values()) - {"one"},
    set(world.BACKGROUNDS),
]


def mismatch(prompt: str, rng: random.Random) -> str | None:
    """The prompt with one word changed so that the scene no longer fits it (None: nothing to change)."""
    text = prompt
    for rel in ("left of", "right of"):
        if rel in text and rng.random() < 0.3:
            return text.replace(rel, world.INVERSE[rel])
    for rel in ("above", "below"):
        if f" {rel} " in text and rng.random() < 0.3:
            return text.replace(f" {rel} ", f" {world.INVERSE[rel]} ")
    tokens = text.split(" ")
    spots = [(i, group) for i, tok in enumerate(tokens) for group in _SWAPS if tok.rstrip(",") in group]
    if not spots:
        return None
    i, group = rng.choice(spots)
    word = tokens[i].rstrip(",")
    tokens[i] = tokens[i].replace(word, rng.choice(sorted(group - {word})))
    return " ".join(tokens)


def training_batch(seed: int, step: int, batch: int) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """Images in [-1, 1] repeated for (match, hard mismatch, easy mismatch) captions and their labels."""
    rng = random.Random(seed * 1_000_003 + step)
    scenes = [
        world.sample_counting_scene(rng) if rng.random() < 0.15 else world.sample_scene(rng)
        for _ in range(batch)
    ]
    images = world.render_batch(scenes)
    blur = torch.tensor([rng.random() < 0.33 for _ in scenes])  # generators draw softer images
    if blur.any():
        images[blur] = F.avg_pool2d(images[blur], 3, stride=1, padding=1, count_include_pad=False)
    captions = [world.caption(s, rng) for s in scenes]
    pixels, prompts, labels = [], [], []
    for i, c in enumerate(captions):
        hard = mismatch(c, rng)
        other = captions[(i + 1) % batch]
        pixels += [images[i]] * (3 if hard else 2)
        prompts += [c, *([hard] if hard else []), other]
        labels += [1.0, *([0.0] if hard else []), 1.0 if other == c else 0.0]
    return torch.stack(pixels) * 2 - 1, prompts, torch.tensor(labels)


def train(
    steps: int, *, batch: int = 32, lr: float = 2e-3, seed: int = 0, preset: str = "mini", log: Any = print
) -> RewardModel:
    torch.manual_seed(seed)
    model = RewardModel(RewardConfig.preset(preset))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    for step in range(steps):
        images, prompts, labels = training_batch(seed, step, batch)
        logits = model(images, prompts)
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 100 == 0:
            acc = float(((logits > 0) == (labels > 0.5)).float().mean())
            log(f"step {step + 1}/{steps}  loss {loss.item():.4f}  accuracy {acc:.1%}")
    return model.eval()


def held_out(model: RewardModel, n: int = 512, seed: int = 99) -> dict[str, float]:
    """On fresh scenes: accuracy of the match decision, the share of (match, hard mismatch) pairs ranked
    right, and the median logit of matches (the ReFL margin)."""
    images, prompts, labels = training_batch(seed, 0, n)
    with torch.no_grad():
        logits = torch.cat(
            [model(images[i : i + 256], prompts[i : i + 256]) for i in range(0, len(prompts), 256)]
        )
    ranked, pairs, i = 0, 0, 0
    while i < len(prompts):  # groups of 3 (match, hard, easy) or 2 (match, easy)
        size = 3 if i + 2 < len(prompts) and labels[i + 1] == 0 and images[i].equal(images[i + 2]) else 2
        if size == 3:
            pairs += 1
            ranked += int(logits[i] > logits[i + 1])
        i += size
    return {
        "accuracy": float(((logits > 0) == (labels > 0.5)).float().mean()),
        "hard_pairs_ranked": ranked / max(pairs, 1),
        "match_median_logit": float(logits[labels > 0.5].median()),
    }


def save(model: RewardModel, directory: Path, margin: float) -> None:
    from seed_core.weights import save_safetensors

    directory.mkdir(parents=True, exist_ok=True)
    save_safetensors(model.state_dict(), directory / "reward.safetensors", dtype="float16", force=True)
    cfg = RewardConfig(**{**model.cfg.to_dict(), "margin": margin})
    cfg.to_json(directory / "config.json")


@functools.cache
def load(directory: Path = WEIGHTS, device: str = "cpu") -> RewardModel:
    from seed_core.weights import load_model

    if not (directory / "config.json").is_file():
        raise FileNotFoundError(
            f"no reward model in {directory}; train one with `python -m seed_mini.reward`"
        )
    cfg = RewardConfig.from_json(directory / "config.json")
    model = load_model(
        lambda: RewardModel(cfg), directory / "reward.safetensors", dtype="float32", device=device
    )
    return model.eval().requires_grad_(False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m seed_mini.reward",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--to", type=Path, default=WEIGHTS, help="directory to write (default: the package's)"
    )
    args = parser.parse_args(argv)
    model = train(args.steps, seed=args.seed)
    scores = held_out(model)
    print("held-out: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    save(model, args.to, margin=round(scores["match_median_logit"], 2))
    print(f"wrote {args.to}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
