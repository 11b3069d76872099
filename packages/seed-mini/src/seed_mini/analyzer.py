"""Recover a scene from pixels: background, and each object's shape, colour, size class and position.

Exact on rendered scenes because it inverts the renderer: objects are connected regions that differ from
the background colour; the colour is the nearest palette entry; the shape is the renderer's template
(same area, same centroid) that overlaps the region best, which also gives the centre and size.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image

from seed_core.images import from_pil
from seed_mini import world

FOREGROUND = 0.15  # colour distance from the background (RGB in [0, 1]) that makes a pixel an object's
MIN_AREA_FRACTION = 0.003  # regions smaller than this share of the image are noise


@dataclass(frozen=True)
class Detected:
    shape: str
    colour: str
    size: str
    x: float
    y: float
    area: int
    fit: float  # IoU of the region with the chosen template: how shape-like the region is

    def as_obj(self) -> world.Obj:
        return world.Obj(self.shape, self.colour, self.size, self.x, self.y)


@dataclass(frozen=True)
class Analysis:
    background: str
    objects: tuple[Detected, ...]

    def as_scene(self) -> world.Scene:
        return world.Scene(self.background, tuple(o.as_obj() for o in self.objects))


def _palette(names: dict[str, tuple[int, int, int]]) -> tuple[list[str], torch.Tensor]:
    return list(names), torch.tensor(list(names.values()), dtype=torch.float32) / 255.0


@functools.lru_cache(maxsize=1)
def _template_stats() -> dict[str, tuple[float, float, float]]:
    """Per shape: area / r^2, and the centroid's offset from the shape's centre in units of r."""
    n, r = 160, 50.0
    xs, ys = world.pixel_grid(n, n)
    xs, ys = xs - n / 2, ys - n / 2
    stats = {}
    for shape in world.SHAPES:
        alpha = (0.5 - world._sdf(shape, xs, ys, r)).clamp(0, 1)
        area = alpha.sum()
        stats[shape] = (
            float(area / r**2),
            float((alpha * xs).sum() / area / r),
            float((alpha * ys).sum() / area / r),
        )
    return stats


def _components(mask: torch.Tensor) -> torch.Tensor:
    """4-connected labels of a bool (H, W) mask: 0 = background, else a positive region id."""
    h, w = mask.shape
    big = h * w + 1
    labels = torch.where(mask, torch.arange(1, h * w + 1, dtype=torch.float32).view(h, w), torch.tensor(big))
    while True:  # propagate the smallest id through each region
        padded = F.pad(labels[None, None], (1, 1, 1, 1), value=big)[0, 0]
        neighbours = torch.stack(
            (padded[1:-1, 1:-1], padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:])
        ).amin(0)
        new = torch.where(mask, neighbours, labels)
        if torch.equal(new, labels):
            break
        labels = new
    return torch.where(mask, labels, torch.tensor(0.0)).long()


def analyze(image: torch.Tensor | Image.Image) -> Analysis:
    """Analyse a (3, H, W) image in [0, 1] (or a PIL image)."""
    if isinstance(image, Image.Image):
        image = from_pil(image)
    _, h, w = image.shape
    side = min(h, w)
    pixels = image.permute(1, 2, 0).float()  # (H, W, 3)
    border = torch.cat((pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]))
    bg_rgb = border.median(dim=0).values
    bg_names, bg_palette = _palette(world.BACKGROUNDS)
    background = bg_names[int((bg_palette - bg_rgb).norm(dim=1).argmin())]

    distance = (pixels - bg_rgb).norm(dim=-1)
    labels = _components(distance > FOREGROUND)
    colour_names, colour_palette = _palette(world.COLOURS)
    xs, ys = world.pixel_grid(h, w)
    stats = _template_stats()
    found = []
    for label in labels.unique().tolist():
        if label == 0:
            continue
        region = labels == label
        area = int(region.sum())
        if area < MIN_AREA_FRACTION * h * w:
            continue
        core = region & (distance > 2 * FOREGROUND)
        rgb = pixels[core if core.any() else region].mean(dim=0)
        colour = colour_names[int((colour_palette - rgb).norm(dim=1).argmin())]
        # soft coverage of each pixel by this object (1 inside, fractions on blurred or anti-aliased edges)
        contrast = float((rgb - bg_rgb).norm()) or 1.0
        near = F.max_pool2d(region[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
        cover = torch.where(near, (distance / contrast).clamp(0, 1), torch.zeros(()))
        soft_area = float(cover.sum())
        cx, cy = float((cover * xs).sum()) / soft_area, float((cover * ys).sum()) / soft_area
        rows, cols = near.any(dim=1).nonzero(), near.any(dim=0).nonzero()
        pad = int(math.sqrt(area)) // 2 + 2  # templates are drawn in a window around the region only
        y0w, y1w = max(0, int(rows.min()) - pad), min(h, int(rows.max()) + pad + 1)
        x0w, x1w = max(0, int(cols.min()) - pad), min(w, int(cols.max()) + pad + 1)
        win, wx, wy = cover[y0w:y1w, x0w:x1w], xs[y0w:y1w, x0w:x1w], ys[y0w:y1w, x0w:x1w]
        best: tuple[float, str, float, float, float] | None = None
        for shape, (a, ox, oy) in stats.items():
            r = math.sqrt(soft_area / a)
            x0, y0 = cx - ox * r, cy - oy * r
            template = (0.5 - world._sdf(shape, wx - x0, wy - y0, r)).clamp(0, 1)
            iou = float(torch.minimum(template, win).sum()) / float(torch.maximum(template, win).sum())
            if best is None or iou > best[0]:
                best = (iou, shape, r, x0, y0)
        assert best is not None
        iou, shape, r, x0, y0 = best
        size = min(world.SIZES, key=lambda s: abs(math.log(r / side / world.SIZES[s])))
        found.append(Detected(shape, colour, size, x0 / w, y0 / h, area, iou))
    found.sort(key=lambda d: (d.y, d.x))
    return Analysis(background, tuple(found))
