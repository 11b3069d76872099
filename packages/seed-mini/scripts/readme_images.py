"""Regenerate the images in seed-mini's README with the shipped model.

    uv run python packages/seed-mini/scripts/readme_images.py

Writes docs/generate.png (one row per prompt, four seeds) and docs/edit.png (source, instruction result)
next to this script's package.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from seed_core.images import save_png, to_pil
from seed_core.pipeline import load
from seed_core.requests import EditRequest, GenerateRequest
from seed_mini import world

PROMPTS = [
    "a red circle",
    "a blue square on a black background",
    "a yellow star left of a green triangle",
    "three purple hexagons",
    "a pink diamond above a cyan circle",
]
EDITS = [
    (world.Scene("white", (world.Obj("circle", "red", "large", 0.5, 0.5),)), "make the red circle green"),
    (
        world.Scene(
            "black",
            (
                world.Obj("square", "blue", "medium", 0.3, 0.5),
                world.Obj("star", "yellow", "medium", 0.72, 0.5),
            ),
        ),
        "remove the yellow star",
    ),
    (world.Scene("gray", (world.Obj("triangle", "orange", "large", 0.5, 0.5),)), "make the background white"),
]
CELL, LABEL = 64, 260


def _grid(rows: list[tuple[str, list[Image.Image]]]) -> Image.Image:
    cols = max(len(images) for _, images in rows)
    grid = Image.new("RGB", (LABEL + cols * (CELL + 2), len(rows) * (CELL + 2)), "white")
    draw = ImageDraw.Draw(grid)
    for r, (text, images) in enumerate(rows):
        draw.text((4, r * (CELL + 2) + CELL // 2 - 6), text, fill="black")
        for c, im in enumerate(images):
            grid.paste(im.resize((CELL, CELL)), (LABEL + c * (CELL + 2), r * (CELL + 2)))
    return grid


def main() -> int:
    out = Path(__file__).resolve().parents[1] / "docs"
    pipeline = load("seedream-mini")
    rows = [(p, pipeline.run(GenerateRequest(p, seed=0, num_images=4)).images) for p in PROMPTS]
    save_png(_grid(rows), out / "generate.png", {"prompts": PROMPTS, "seeds": [0, 1, 2, 3]}, force=True)
    edit_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (scene, instruction) in enumerate(EDITS):
            source = save_png(to_pil(world.render(scene)), Path(tmp) / f"s{i}.png")
            result = pipeline.run(EditRequest(instruction, image=str(source), seed=0, num_images=2))
            edit_rows.append((instruction, [Image.open(source).convert("RGB"), *result.images]))
    save_png(_grid(edit_rows), out / "edit.png", {"edits": [e[1] for e in EDITS]}, force=True)
    print(out / "generate.png")
    print(out / "edit.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
