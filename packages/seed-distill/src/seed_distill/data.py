"""Real data for adversarial post-training (`apt`): a folder of images with their captions.

The layout is Hugging Face's image folder: images plus a `metadata.jsonl` with one
``{"file_name": ..., "text": ...}`` a line. A folder of `seed generate` outputs works too (their prompt is
in each PNG's Seed metadata), and `python -m seed_mini.train data --out DIR` renders one from the shapes
world. Images are centre-cropped to the training aspect, resized, and encoded once by the target.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seed_core.errors import UsageError

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class RealData:
    """Encoded real samples: latents (N, ...) and their captions."""

    latents: torch.Tensor
    captions: list[str]

    def __len__(self) -> int:
        return len(self.captions)

    def batch(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, list[str]]:
        index = torch.randint(0, len(self), (n,), generator=generator)
        return self.latents[index.to(self.latents.device)], [self.captions[int(i)] for i in index]


def read_folder(directory: Path, flag: str = "--data") -> list[tuple[Path, str]]:
    """(image, caption) pairs of an image folder; one clear line (naming the option `flag`) for a folder
    that is not one."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"{flag} {directory}: no such directory")
    meta = directory / "metadata.jsonl"
    pairs: list[tuple[Path, str]] = []
    if meta.is_file():
        for number, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                pairs.append((directory / item["file_name"], str(item["text"])))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UsageError(f'{meta}: line {number} is not {{"file_name": ..., "text": ...}}') from None
        missing = [p for p, _ in pairs if not p.is_file()]
        if missing:
            raise UsageError(f"{meta} names {missing[0].name}, which is not in {directory}")
    else:
        from seed_core.errors import SeedError
        from seed_core.images import read_metadata

        for path in sorted(p for p in directory.iterdir() if p.suffix.lower() in SUFFIXES):
            try:
                prompt = read_metadata(path).get("prompt")
            except SeedError:
                prompt = None
            if isinstance(prompt, str):
                pairs.append((path, prompt))
    if not pairs:
        raise UsageError(
            f"{flag} {directory}: no captioned images (give metadata.jsonl with file_name and text, or "
            "images made by `seed generate`)"
        )
    return pairs


def load_images(paths: Sequence[Path], size: tuple[int, int]) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1], centre-cropped to the aspect of `size` (width, height) and resized."""
    from PIL import Image

    width, height = size
    out = []
    for path in paths:
        with Image.open(path) as im:
            im = im.convert("RGB")
            scale = min(im.width / width, im.height / height)
            w, h = round(width * scale), round(height * scale)
            left, top = (im.width - w) // 2, (im.height - h) // 2
            im = im.crop((left, top, left + w, top + h)).resize((width, height), Image.Resampling.BICUBIC)
            pixels = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(height, width, 3)
        out.append(pixels.permute(2, 0, 1).float() / 127.5 - 1)
    return torch.stack(out)


def encode_folder(
    target: Any, directory: Path, size: tuple[int, int], chunk: int = 32, flag: str = "--data"
) -> RealData:
    """Read, resize and encode a folder once (the latents stay in memory for the run)."""
    pairs = read_folder(directory, flag)
    latents = []
    for i in range(0, len(pairs), chunk):
        pixels = load_images([p for p, _ in pairs[i : i + chunk]], size)
        latents.append(target.encode(pixels).detach())
    return RealData(torch.cat(latents), [c for _, c in pairs])
