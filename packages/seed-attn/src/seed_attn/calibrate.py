"""`seed calibrate`: run a few prompts through a model, gather PARO block statistics, save the plan."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from seed_attn.backends import backbone, plan_directory
from seed_attn.paro import Calibrator, ParoPlan, install
from seed_core.attention import set_attention_backend
from seed_core.files import check_writable
from seed_core.pipeline import load
from seed_core.requests import GenerateRequest

PROMPTS = (
    "a red circle left of a blue square",
    "three green triangles",
    "a yellow star on a black background",
    "a purple hexagon above an orange diamond",
)


def calibrate(
    model: str,
    *,
    size: tuple[int, int] | None = None,
    prompts: Sequence[str] = PROMPTS,
    steps: int | None = None,
    density: float = 0.3,
    bits: int = 8,
    groups: int = 4,
    alpha: float = 0.5,
    out: Path | None = None,
    force: bool = False,
    device: str = "cpu",
    tick: Callable[[str], None] | None = None,
) -> tuple[Path, ParoPlan]:
    """Calibrate PARO for `model` at `size` (width, height; default: the model's); returns the plan's JSON
    path (beside the model unless `out`) and the plan."""
    pipeline = load(model, device=device)
    width, height = size or pipeline.default_size
    dit = backbone(pipeline)
    calibrator = Calibrator(groups=groups, alpha=alpha)
    handles = install(dit, calibrator, "paro-calibrate")
    try:
        for i, prompt in enumerate(prompts):
            pipeline.run(GenerateRequest(prompt, width=width, height=height, seed=i, steps=steps))
            if tick:
                tick(prompt)
    finally:
        for handle in handles:
            handle.remove()
        set_attention_backend(dit, None)
    plan = calibrator.plan(
        pipeline.spec.name,
        density,
        bits,
        meta={"prompts": list(prompts), "size": [width, height], "steps": steps or pipeline.default_steps},
    )
    directory = out or plan_directory(pipeline, None)
    stem = ParoPlan.file_stem(plan.prefix, plan.grid, plan.length)
    check_writable(directory / f"{stem}.json", force)
    return plan.save(directory, force=force), plan
