"""The shapes world: scenes of coloured shapes, an anti-aliased torch renderer, captions, edits and
multi-image compositions, all with exactly known truth.

A `Scene` is plain data (background + objects with shape, colour, size class and normalised centre), so
later issues can animate it (moving shapes: a scene per frame) or degrade it (restoration pairs) without
touching the renderer. Rendering is batched torch on signed distance functions, so training data costs
almost nothing next to the model.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "hexagon", "star")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
    "cyan": (40, 200, 210),
    "pink": (240, 130, 190),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
    "beige": (225, 205, 160),
}
# radius / image side; at 64 px a small shape is 7 px in radius, enough for its corners to survive the VAE
SIZES: dict[str, float] = {"small": 0.11, "medium": 0.15, "large": 0.20}
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four"}


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    size: str
    x: float  # centre, 0 = left edge, 1 = right edge
    y: float  # centre, 0 = top edge, 1 = bottom edge

    @property
    def radius(self) -> float:
        return SIZES[self.size]


@dataclass(frozen=True)
class Scene:
    background: str
    objects: tuple[Obj, ...]


def relation(a: Obj, b: Obj, margin: float = 0.05) -> str | None:
    """The clearest relation of a to b, or None when their centres are too close on both axes to say."""
    dx, dy = b.x - a.x, b.y - a.y
    if max(abs(dx), abs(dy)) < margin:
        return None
    if abs(dx) >= abs(dy):
        return "left of" if dx > 0 else "right of"
    return "above" if dy > 0 else "below"


# --- sampling ------------------------------------------------------------------------------------------


def pixel_grid(h: int, w: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """x and y coordinates of pixel centres, each (H, W)."""
    ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5)[:, None].expand(h, w)
    xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5)[None, :].expand(h, w)
    return xs, ys


@functools.cache
def extent(shape: str) -> float:
    """How far the shape reaches from its centre, in units of its radius (a square's corners reach 1.2)."""
    n, r = 200, 50.0
    xs, ys = pixel_grid(n, n)
    xs, ys = xs - n / 2, ys - n / 2
    inside = _sdf(shape, xs, ys, r) < 0.5
    return float(torch.sqrt(xs**2 + ys**2)[inside].max()) / r


def _fits(obj: Obj, others: list[Obj], gap: float = 0.04) -> bool:
    """Inside the image and clear of the others (by their full extents plus a gap)."""
    r = obj.radius * extent(obj.shape)
    if not (r <= obj.x <= 1 - r and r <= obj.y <= 1 - r):
        return False
    return all(math.hypot(obj.x - o.x, obj.y - o.y) > r + o.radius * extent(o.shape) + gap for o in others)


def place(
    rng: random.Random, shape: str, colour: str, size: str, others: list[Obj], tries: int = 200
) -> Obj | None:
    """An object at a random position that does not touch `others`, or None if none was found."""
    r = SIZES[size] * extent(shape)
    for _ in range(tries):
        obj = Obj(shape, colour, size, rng.uniform(r, 1 - r), rng.uniform(r, 1 - r))
        if _fits(obj, others):
            return obj
    return None


def sample_scene(rng: random.Random, n_objects: int | None = None, background: str | None = None) -> Scene:
    """1-4 objects of random shape, colour and size on a random background, none touching."""
    n = n_objects or rng.choice((1, 1, 2, 2, 3, 4))
    objects: list[Obj] = []
    while len(objects) < n:
        sizes = list(SIZES) if len(objects) < 3 else ["small", "medium"]
        obj = place(rng, rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(sizes), objects)
        if obj is None:  # crowded: start again
            objects = []
            continue
        objects.append(obj)
    return Scene(background or rng.choice(list(BACKGROUNDS)), tuple(objects))


def sample_counting_scene(rng: random.Random, count: int | None = None) -> Scene:
    """`count` objects of one shape and colour (for 'three red circles')."""
    count = count or rng.choice((2, 3, 4))
    shape, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
    size = rng.choice(("small", "medium"))
    while True:
        objects: list[Obj] = []
        for _ in range(count):
            obj = place(rng, shape, colour, size, objects)
            if obj is None:
                break
            objects.append(obj)
        if len(objects) == count:
            return Scene(rng.choice(list(BACKGROUNDS)), tuple(objects))


# --- rendering ------------------------------------------------------------------------------------------


def _clip(x: torch.Tensor, lo: float | torch.Tensor, hi: float | torch.Tensor) -> torch.Tensor:
    """clamp for bounds that may be tensors (a batch of radii) or numbers (kept numbers: a number made a
    tensor would be copied to the device, and that copy waits for the device)."""
    x = torch.maximum(x, lo) if isinstance(lo, torch.Tensor) else x.clamp(min=lo)
    return torch.minimum(x, hi) if isinstance(hi, torch.Tensor) else x.clamp(max=hi)


def _sdf(shape: str, px: torch.Tensor, py: torch.Tensor, r: float | torch.Tensor) -> torch.Tensor:
    """Signed distance (in the same units as px, py, r) to a shape of radius r centred at the origin."""
    if shape == "circle":
        return torch.sqrt(px**2 + py**2) - r
    if shape == "square":
        h = r * 0.85  # half side: a square's area close to the circle's
        qx, qy = px.abs() - h, py.abs() - h
        return torch.sqrt(qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2) + torch.maximum(qx, qy).clamp(max=0)
    if shape == "diamond":
        return (px.abs() + py.abs() - r * 1.15) / math.sqrt(2)
    if shape == "triangle":  # equilateral, pointing up (y grows downward), centred on its centroid
        k = math.sqrt(3.0)
        s = r * 1.1  # half side
        x, y = px.abs(), -py
        # fold across the edge; distance to an equilateral triangle of side s * k (iq's formula)
        x, y = x - s, y + s / k
        fold = x + k * y > 0
        x, y = torch.where(fold, (x - k * y) / 2, x), torch.where(fold, (-k * x - y) / 2, y)
        x = x - _clip(x, -2 * s, 0.0)
        return -torch.sqrt(x**2 + y**2) * torch.sign(y)
    if shape == "hexagon":  # flat top
        kx, ky, kz = -0.866025404, 0.5, 0.577350269
        h = r * 0.92
        x, y = py.abs(), px.abs()
        d = 2 * torch.clamp(kx * x + ky * y, max=0)
        x, y = x - d * kx, y - d * ky
        x = x - _clip(x, -kz * h, kz * h)
        y = y - h
        return torch.sqrt(x**2 + y**2) * torch.sign(y)
    if shape == "star":  # five points, one pointing up
        return _star_sdf(px, -py, r * 1.2, 0.45)
    raise ValueError(f"unknown shape {shape!r}; shapes are {', '.join(SHAPES)}")


def _star_sdf(px: torch.Tensor, py: torch.Tensor, r: float | torch.Tensor, inner: float) -> torch.Tensor:
    """Distance to a regular 5-point star (outer radius r, inner radius r * inner), by angular folding."""
    angle = torch.atan2(px, py)  # 0 = pointing up
    sector = 2 * math.pi / 5
    a = torch.remainder(angle + sector / 2, sector) - sector / 2
    rho = torch.sqrt(px**2 + py**2)
    x, y = rho * torch.sin(a).abs(), rho * torch.cos(a)
    # edge from the tip (0, r) to the inner vertex at half a sector
    ix, iy = r * inner * math.sin(sector / 2), r * inner * math.cos(sector / 2)
    ex, ey = ix - 0.0, iy - r
    wx, wy = x - 0.0, y - r
    t = ((wx * ex + wy * ey) / (ex * ex + ey * ey)).clamp(0, 1)
    dist = torch.sqrt((wx - ex * t) ** 2 + (wy - ey * t) ** 2)
    inside = (wx * ey - wy * ex) > 0
    return torch.where(inside, -dist, dist)


def _colour(name: str) -> torch.Tensor:
    rgb = COLOURS.get(name) or BACKGROUNDS[name]
    return torch.tensor(rgb, dtype=torch.float32) / 255.0


def render(scene: Scene, size: int | tuple[int, int] = 64) -> torch.Tensor:
    """(3, H, W) float image in [0, 1]; edges anti-aliased over one pixel."""
    w, h = (size, size) if isinstance(size, int) else size
    side = min(w, h)  # sizes are relative to the shorter side, positions to each side
    xs, ys = pixel_grid(h, w)
    image = _colour(scene.background).view(3, 1, 1).expand(3, h, w).clone()
    for obj in scene.objects:
        dist = _sdf(obj.shape, xs - obj.x * w, ys - obj.y * h, obj.radius * side)
        alpha = (0.5 - dist).clamp(0, 1)  # pixel coverage from the signed distance
        image = image * (1 - alpha) + _colour(obj.colour).view(3, 1, 1) * alpha
    return image


# every colour a scene uses (objects' then backgrounds'), as rows of one table: a packed scene names them
PALETTE: tuple[str, ...] = (*COLOURS, *BACKGROUNDS)
_PALETTE_INDEX = {name: i for i, name in enumerate(PALETTE)}
_SHAPE_INDEX = {name: i for i, name in enumerate(SHAPES)}


@dataclass(frozen=True)
class PackedScenes:
    """A batch of scenes as two small CPU tensors, what `render_packed` needs. Built where the scenes are
    drawn (a worker process sends it), so the training loop renders a batch in one pass per shape kind
    and does no per-object work on its own thread."""

    backgrounds: torch.Tensor  # (B,) long, rows of PALETTE
    objects: torch.Tensor  # (n, 5) float64: scene index, colour (row of PALETTE), x, y, radius; by shape
    counts: tuple[int, ...]  # objects of each shape, in SHAPES order (the table's row ranges)

    def __len__(self) -> int:
        return len(self.backgrounds)


def pack(scenes: Sequence[Scene]) -> PackedScenes:
    """The scenes as a `PackedScenes`; objects keep their order within each shape kind."""
    rows: list[list[tuple[float, float, float, float, float]]] = [[] for _ in SHAPES]
    for i, scene in enumerate(scenes):
        for o in scene.objects:
            rows[_SHAPE_INDEX[o.shape]].append((i, _PALETTE_INDEX[o.colour], o.x, o.y, o.radius))
    table = [row for kind in rows for row in kind]
    return PackedScenes(
        torch.tensor([_PALETTE_INDEX[s.background] for s in scenes], dtype=torch.long),
        torch.tensor(table, dtype=torch.float64).view(len(table), 5),
        tuple(len(kind) for kind in rows),
    )


@functools.cache
def _palette() -> torch.Tensor:
    return torch.stack([_colour(name) for name in PALETTE])  # (colours, 3)


def _can_pin() -> bool:
    return torch.cuda.is_available()  # pinning needs the CUDA runtime (absent where CUDA is faked)


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A CPU tensor on `device` without waiting: on CUDA a plain copy from pageable memory synchronises
    the stream, so every such copy in a training step would wait for the step before it to finish."""
    device = torch.device(device)
    if device.type != "cuda":
        return tensor.to(device)
    if _can_pin():
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def render_packed(
    packed: PackedScenes, size: int | tuple[int, int] = 64, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1]: `render_batch` of packed scenes.

    Objects never touch (placement keeps a gap wider than the one-pixel anti-aliasing), so their coverages
    are disjoint and compositing reduces to sums: background * (1 - sum alpha) + sum alpha * colour. The
    geometry is scaled to pixels on the CPU in float64 (as Python floats would be) and copied once."""
    w, h = (size, size) if isinstance(size, int) else size
    side, b = min(w, h), len(packed)
    xs, ys = pixel_grid(h, w, device)
    table, palette = packed.objects, _palette()
    scale = torch.tensor((w, h, side), dtype=torch.float64)
    # one copy: (n, 6) centre x, y and radius in pixels, then the colour
    rows_cpu = torch.cat(((table[:, 2:] * scale).float(), palette[table[:, 1].long()]), dim=1)
    geometry, colours = to_device(rows_cpu, device).split((3, 3), dim=1)
    index = to_device(table[:, 0].long(), device)
    backgrounds = to_device(palette[packed.backgrounds], device)  # (B, 3)
    cover = torch.zeros(b, h, w, device=device)
    paint = torch.zeros(b, 3, h, w, device=device)
    start = 0
    for shape, count in zip(SHAPES, packed.counts, strict=True):
        if count == 0:
            continue
        rows = slice(start, start + count)
        start += count
        cx, cy, r = (geometry[rows, k, None, None] for k in range(3))  # each (n, 1, 1)
        alpha = (0.5 - _sdf(shape, xs - cx, ys - cy, r)).clamp(0, 1)  # (n, H, W)
        cover.index_add_(0, index[rows], alpha)
        paint.index_add_(0, index[rows], alpha[:, None] * colours[rows, :, None, None])
    return backgrounds[:, :, None, None] * (1 - cover[:, None]) + paint


def render_batch(
    scenes: Sequence[Scene], size: int | tuple[int, int] = 64, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1], equal to stacking `render` (to float rounding), in one pass per shape kind:
    on a GPU (`device`) this keeps the data of a training step off the Python loop."""
    return render_packed(pack(scenes), size, device)


# --- captions -------------------------------------------------------------------------------------------


def describe(obj: Obj, rng: random.Random | None = None, with_size: bool | None = None) -> str:
    use_size = with_size if with_size is not None else (rng.random() < 0.3 if rng else False)
    return f"{obj.size} {obj.colour} {obj.shape}" if use_size else f"{obj.colour} {obj.shape}"


def _plural(shape: str) -> str:
    return shape + "es" if shape.endswith("x") else shape + "s"


def caption(scene: Scene, rng: random.Random) -> str:
    """A caption that the scene satisfies, in one of several phrasings."""
    objs = scene.objects
    bg = f" on a {scene.background} background" if rng.random() < 0.5 else ""
    if rng.random() < 0.05:  # under-specified: any scene with that many objects fits (diversity is measured)
        if len(objs) == 1:
            return rng.choice(("a shape", "an object"))
        return f"{NUMBERS[len(objs)]} {rng.choice(('shapes', 'objects'))}"
    if len(objs) > 1 and len({(o.shape, o.colour) for o in objs}) == 1:
        n, o = NUMBERS[len(objs)], objs[0]
        text = rng.choice((f"{n} {o.colour} {_plural(o.shape)}", f"{n} {_plural(o.shape)}, all {o.colour}"))
        return text + bg
    if len(objs) == 1:
        a = describe(objs[0], rng)
        return rng.choice((f"a {a}", f"one {a}", f"a single {a}")) + bg
    if len(objs) == 2:
        a, b = objs
        rel = relation(a, b)
        if rel is not None:
            if rng.random() < 0.5:
                return f"a {describe(a, rng)} {rel} a {describe(b, rng)}" + bg
            return f"a {describe(b, rng)} {INVERSE[rel]} a {describe(a, rng)}" + bg
        return f"a {describe(a, rng)} and a {describe(b, rng)}" + bg
    parts = [f"a {describe(o, rng)}" for o in objs]
    rng.shuffle(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1] + bg


# --- edits and compositions -----------------------------------------------------------------------------

EDIT_OPS = ("recolour", "remove", "add", "move", "resize", "reshape", "background")


@dataclass(frozen=True)
class Edit:
    op: str
    instruction: str
    source: Scene
    target: Scene
    index: int | None  # the object changed (in source), None for background / add


def make_edit(scene: Scene, rng: random.Random, op: str | None = None) -> Edit | None:
    """A (source, instruction, target) triple that changes one thing, or None if `op` cannot apply."""
    op = op or rng.choice(EDIT_OPS)
    objs = list(scene.objects)
    i = rng.randrange(len(objs)) if objs else None
    if op == "background":
        new = rng.choice([b for b in BACKGROUNDS if b != scene.background])
        text = rng.choice((f"make the background {new}", f"change the background to {new}"))
        return Edit(op, text, scene, replace(scene, background=new), None)
    if op == "add":
        obj = place(rng, rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(("small", "medium")), objs)
        if obj is None or len(objs) >= 4:
            return None
        return Edit(
            op, f"add a {describe(obj, with_size=False)}", scene, replace(scene, objects=(*objs, obj)), None
        )
    if i is None:
        return None
    obj = objs[i]
    if sum(1 for o in objs if (o.shape, o.colour) == (obj.shape, obj.colour)) > 1:
        return None  # 'the red circle' would be ambiguous
    name = f"the {obj.colour} {obj.shape}"
    if op == "recolour":
        colour = rng.choice([c for c in COLOURS if c != obj.colour])
        new, text = (
            replace(obj, colour=colour),
            rng.choice((f"make {name} {colour}", f"paint {name} {colour}")),
        )
    elif op == "remove":
        rest = objs[:i] + objs[i + 1 :]
        if not rest:
            return None
        return Edit(
            op,
            rng.choice((f"remove {name}", f"delete {name}")),
            scene,
            replace(scene, objects=tuple(rest)),
            i,
        )
    elif op == "reshape":
        shape = rng.choice([s for s in SHAPES if s != obj.shape])
        new, text = replace(obj, shape=shape), f"turn {name} into a {shape}"
    elif op == "resize":
        order = list(SIZES)
        k = order.index(obj.size)
        size = order[k + 1] if k == 0 or (k == 1 and rng.random() < 0.5) else order[k - 1]
        new = replace(obj, size=size)
        text = f"make {name} {'bigger' if order.index(size) > k else 'smaller'}"
        if not _fits(new, objs[:i] + objs[i + 1 :]):
            return None
    elif op == "move":
        direction, (dx, dy) = rng.choice(
            (("left", (-1, 0)), ("right", (1, 0)), ("up", (0, -1)), ("down", (0, 1)))
        )
        step = rng.uniform(0.2, 0.35)
        new = replace(obj, x=obj.x + dx * step, y=obj.y + dy * step)
        text = f"move {name} {direction}"
        if not _fits(new, objs[:i] + objs[i + 1 :]):
            return None
    else:
        raise ValueError(f"unknown edit {op!r}; edits are {', '.join(EDIT_OPS)}")
    objs[i] = new
    return Edit(op, text, scene, replace(scene, objects=tuple(objs)), i)


@dataclass(frozen=True)
class Composition:
    instruction: str
    references: tuple[Scene, ...]
    target: Scene


def make_composition(rng: random.Random) -> Composition:
    """Two single-object references and a target that combines them (shape of 1 on the background of 2,
    or both objects side by side)."""
    a, b = sample_scene(rng, 1), sample_scene(rng, 1)
    while b.background == a.background:
        b = sample_scene(rng, 1)
    oa, ob = a.objects[0], b.objects[0]
    if rng.random() < 0.5:
        obj = replace(oa, x=0.5, y=0.5)
        return Composition(
            f"the {oa.colour} {oa.shape} of image 1 on the background of image 2",
            (a, b),
            Scene(b.background, (obj,)),
        )
    left = replace(oa, size="medium", x=0.27, y=0.5)
    right = replace(ob, size="medium", x=0.73, y=0.5)
    return Composition(
        "the object of image 1 left of the object of image 2", (a, b), Scene(a.background, (left, right))
    )
