"""Image files that carry how they were made.

`save_png` writes the pixels with a ``seed`` text chunk holding JSON metadata (request, model,
accelerators, versions) so `seed info IMAGE` and `read_metadata` can tell, and reproduce, what made it.
Writes are atomic and refuse to overwrite without `force`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from seed_core.errors import ImageMetadataError, InvalidRequestError
from seed_core.files import atomic_path

if TYPE_CHECKING:
    import torch

METADATA_KEY = "seed"


def to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) or (1, H, W) float tensor in [0, 1] -> PIL RGB / L image."""
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected a (3, H, W) or (1, H, W) image tensor, got {tuple(image.shape)}")
    pixels = (image.detach().float().clamp(0, 1) * 255).round().to("cpu").byte()
    array = pixels.permute(1, 2, 0).numpy()  # (H, W, C) uint8
    return Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)


def from_pil(image: Image.Image) -> torch.Tensor:
    """PIL image -> (3, H, W) float tensor in [0, 1]."""
    import numpy as np
    import torch

    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def load_image(path: str | Path) -> Image.Image:
    """Open an image file as RGB, with a one-line error for a missing or unreadable file."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise InvalidRequestError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidRequestError(f"{path}: not a readable image ({exc})") from None


def save_png(
    image: Image.Image, path: str | Path, metadata: dict[str, Any] | None = None, *, force: bool = False
) -> Path:
    """Write `image` as PNG with `metadata` embedded as JSON, atomically."""
    path = Path(path)
    info = PngImagePlugin.PngInfo()
    if metadata is not None:
        info.add_itxt(METADATA_KEY, json.dumps(metadata, sort_keys=True, default=str))
    with atomic_path(path, force=force) as tmp:
        image.save(tmp, format="PNG", pnginfo=info)
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The Seed metadata embedded in an image written by `save_png`."""
    try:
        with Image.open(path) as im:
            text = im.info.get(METADATA_KEY) if hasattr(im, "info") else None
    except FileNotFoundError:
        raise ImageMetadataError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageMetadataError(f"{path}: not a readable image ({exc})") from None
    if text is None:
        raise ImageMetadataError(f"{path}: has no Seed metadata (was it made by `seed generate`?)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise ImageMetadataError(f"{path}: its Seed metadata is not valid JSON") from None
    if not isinstance(data, dict):
        raise ImageMetadataError(f"{path}: its Seed metadata is not a JSON object")
    return data
