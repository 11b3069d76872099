"""`seed calibrate`: run a few prompts through a model, gather PARO block statistics, save the plan."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from seed_attn.backends import TUNED_SUFFIX, backbone
from seed_attn.paro import Calibrator, ParoPlan, find_plan, install
from seed_core.errors import UsageError
from seed_core.files import check_writable
from seed_core.pipeline import load

BLOCKS = (32, 64, 128)  # the Triton kernel's tiles that run every bit width (kernels.unsupported)
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
    accelerators: Sequence[str] = (),
    frames: int | None = None,
    order_score: str = "paro",
    orders_from: Path | None = None,
    block: int = 64,
) -> tuple[Path, ParoPlan]:
    """Calibrate PARO for `model` at `size` (width, height; default: the model's); returns the plan's JSON
    path (beside the model unless `out`) and the plan. `accelerators` are applied first (a distilled
    student, quantized weights): the plan then fits the model as it will run. A text-to-video model makes
    `frames` frames (default: the model's). `order_score="error"` chooses each head's order by the output
    error of the plan's own attention (a second pass over the prompts, see `seed_attn.paro`); `orders_from`
    (a plan directory) keeps the token orders of its plan for this layout and calibrates the masses only
    (the official code keeps its permutation and sparse plans apart: a model tuned further keeps the orders
    that measured best)."""
    if orders_from is not None and order_score != "paro":
        raise UsageError("--orders-from keeps another plan's orders; it does not take --order-score")
    # checks its settings before any work
    if block not in BLOCKS:
        raise UsageError(f"--block {block}: the kernels take blocks of {', '.join(map(str, BLOCKS))} tokens")
    calibrator = Calibrator(
        block=block, groups=groups, alpha=alpha, order_score=order_score, density=density, bits=bits
    )
    if accelerators and out is None:
        raise UsageError(
            "a plan calibrated with --with accelerators must not replace the model's own plan: give "
            "--out DIR and use it with --accel paro:plan=DIR"
        )
    pipeline = load(model, accelerators=accelerators, device=device)
    width, height = size or pipeline.default_size
    directory = out or (Path(pipeline.source) / "paro" if pipeline.source else None)
    if directory is None:
        raise UsageError(f"model '{model}' has no model directory to keep the plan in; pass --out DIR")
    check_writable(directory / "plan.json", force=True)  # a writable place, before minutes of sampling
    dit = backbone(pipeline)
    installed = install(dit, calibrator, "paro-calibrate")
    draft = None  # a pipeline that drafts small and refines at full size: only the refine is recorded
    try:
        for error_pass in (False, True) if order_score == "error" else (False,):
            if error_pass:
                calibrator.begin_error_pass()
            for i, prompt in enumerate(prompts):
                result = pipeline.run(
                    pipeline.text_request(
                        prompt, width=width, height=height, seed=i, steps=steps, frames=frames
                    )
                )
                draft = result.settings.get("draft")
                if i == 0 and not error_pass and calibrator.layout is not None:
                    # the layout is known: refuse an overwrite or a missing --orders-from plan now
                    stem = ParoPlan.file_stem(*calibrator.layout)
                    check_writable(directory / f"{stem}.json", force)
                    if (directory / f"{stem}{TUNED_SUFFIX}").is_file():
                        raise UsageError(
                            f"{directory} holds a backbone tuned for this plan's masks (seed tune); a new "
                            "calibration would change them under it: calibrate into another --out"
                        )
                    if orders_from is not None:
                        calibrator.orders = _given_orders(Path(orders_from), calibrator.layout)
                if tick:
                    tick(prompt)
    finally:
        installed.remove()
    plan = calibrator.plan(
        pipeline.spec.name,
        density,
        bits,
        meta={
            "prompts": list(prompts),
            "size": [width, height],
            "steps": steps or pipeline.default_steps,
            "frames": frames,
            "draft": draft,
        },
    )
    return plan.save(directory, force=force), plan


def _given_orders(directory: Path, layout: tuple[int, tuple[int, ...], int]) -> torch.Tensor:
    """The token orders of the plan in `directory` for this layout (`--orders-from`)."""
    source = find_plan(directory, *layout)
    if source is None:
        raise UsageError(f"--orders-from {directory}: no plan there for this size ({layout[1]})")
    return ParoPlan.load(source).orders
