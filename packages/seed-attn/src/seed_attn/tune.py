"""`seed tune`: sparse-aware self-distillation of a model's backbone for its PARO plan.

PAROAttention is training-free, and on seedream-mini at 256 px the blocks that density 0.3 drops cost
prompt accuracy (benchmarks/RESULTS.md: the border tokens attend to the whole border and the text, a
pattern no block of any order holds). Here a copy of the backbone learns to do without them: the model
generates prompts at the plan's size with exact attention while its calls at that size are recorded (the
sampler's own inputs and the outputs), then the copy, with the plan's masks in the loop, is regressed onto
those outputs (guided as the sampler combines them). The tuned copy is saved beside the plan
(`<plan>.backbone.safetensors`); `--accel paro` routes the calls of that size to it and every other call (a
draft at exact attention) to the model's own backbone, which stays as it was.

Training computes the masked attention densely in 16 bits (`ops.masked_attention`: the custom op has no
backward; the bits cost nothing measurable on this model, RESULTS "Session 28"); a checkpoint every
`checkpoint_every` steps lets a killed run resume where it stopped and end where an uninterrupted one ends.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seed_attn.backends import TUNED_SUFFIX, backbone
from seed_attn.paro import ParoPlan
from seed_core.errors import UsageError
from seed_core.files import atomic_dir

CALLS = "calls.pt"
CHECKPOINT = "checkpoint.pt"


@dataclass
class TuneConfig:
    steps: int = 300
    batch: int = 4  # recorded calls a step (each with all its guidance branches)
    lr: float = 3e-5
    guidance: float | None = None  # how the sampler combines two branches [the model's]
    held: int = 24  # prompts whose calls are held out to measure the error
    checkpoint_every: int = 50
    seed: int = 0


@dataclass
class Call:
    """One backbone call of a generation at the plan's size: its inputs and its exact-attention output."""

    x: torch.Tensor  # (rows, C, H, W): the guidance branches of one image
    t: torch.Tensor  # (rows,)
    cond: Any  # the backbone's conditioning, as the sampler passed it
    out: torch.Tensor  # (rows, C, H, W)
    prompt: str


def _detached(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, tuple):
        return tuple(_detached(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(
            value, **{f.name: _detached(getattr(value, f.name)) for f in dataclasses.fields(value)}
        )
    return value


def record_calls(
    pipeline: Any,
    prompts: Sequence[str],
    size: tuple[int, int],
    *,
    seed: int = 0,
    tick: Callable[[], None] | None = None,
) -> list[Call]:
    """Generate each prompt at `size` with exact attention; keep the backbone's calls at the largest
    latent size (the plan's: a draft's smaller calls are not what the plan runs)."""
    from seed_core.requests import GenerateRequest

    calls: list[Call] = []
    prompt = [""]

    def hook(_module: Any, inputs: Any, output: Any) -> None:
        x, t, cond = inputs[:3]
        calls.append(Call(x.detach().clone(), t.detach().clone(), _detached(cond), output.detach().clone(),
                          prompt[0]))  # fmt: skip

    handle = backbone(pipeline).register_forward_hook(hook)
    try:
        for i, text in enumerate(prompts):
            prompt[0] = text
            pipeline.run(GenerateRequest(text, width=size[0], height=size[1], seed=seed + i))
            if tick:
                tick()
    finally:
        handle.remove()
    largest = max(c.x.shape[-2:].numel() for c in calls)
    return [c for c in calls if c.x.shape[-2:].numel() == largest]


def _guided(out: torch.Tensor, guidance: float | None) -> torch.Tensor:
    """What the sampler steps with: the classifier-free combination of two branches (else the rows)."""
    if guidance is None or out.shape[0] != 2:
        return out
    return out[1:] + guidance * (out[:1] - out[1:])


def _loss(net: torch.nn.Module, call: Call, guidance: float | None) -> torch.Tensor:
    out = net(call.x, call.t, call.cond)
    # the guided output, and each branch at a quarter (they alone run where guidance is off)
    guided = (_guided(out, guidance) - _guided(call.out, guidance)).pow(2).mean()
    return guided + 0.25 * (out - call.out).pow(2).mean()


def held_error(net: torch.nn.Module, calls: Sequence[Call], guidance: float | None) -> float:
    """Relative squared error of the guided output against exact attention's, over `calls`."""
    num = den = 0.0
    with torch.no_grad():
        for c in calls:
            out, ref = _guided(net(c.x, c.t, c.cond), guidance), _guided(c.out, guidance)
            num += float((out - ref).pow(2).sum())
            den += float(ref.pow(2).sum())
    return num / max(den, 1e-30)


def split(calls: Sequence[Call], held: int) -> tuple[list[Call], list[Call]]:
    """(calls to train on, held-out calls): the calls of the last `held` prompts are held out."""
    prompts = list(dict.fromkeys(c.prompt for c in calls))
    if len(prompts) <= held:
        raise UsageError(f"tuning needs more than --held {held} prompts; got {len(prompts)}")
    out = set(prompts[len(prompts) - held :])
    return [c for c in calls if c.prompt not in out], [c for c in calls if c.prompt in out]


def tune(
    pipeline: Any,
    calls: Sequence[Call],
    cfg: TuneConfig,
    work: Path,
    *,
    tick: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Train the pipeline's backbone in place (its PARO runtime installed) on `calls`; checkpoints in
    `work` (resumed when one is there). Returns the record: held-out error before and after, steps."""
    net = backbone(pipeline).float()
    guidance = cfg.guidance if cfg.guidance is not None else getattr(pipeline, "default_guidance", None)
    train, held = split(calls, cfg.held)
    if len(train) < cfg.batch:
        raise UsageError(f"--batch {cfg.batch} is more than the {len(train)} calls recorded to train on")
    net.eval()  # the outputs it matches were recorded in eval mode (no dropout), and so it will run
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    rng = random.Random(cfg.seed)
    step, record = (
        0,
        {"held_calls": len(held), "train_calls": len(train), "latent": list(calls[0].x.shape[-2:])},
    )
    work.mkdir(parents=True, exist_ok=True)
    file = work / CHECKPOINT
    if file.is_file():
        state = torch.load(file, map_location="cpu", weights_only=False)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        rng.setstate(state["rng"])
        step, record = state["step"], state["record"]
    else:
        record["held_error_before"] = held_error(net, held, guidance)
    while step < cfg.steps:
        step += 1
        for group in opt.param_groups:  # a short warmup: Adam's first steps are its largest
            group["lr"] = cfg.lr * min(1.0, step / 20)
        total = 0.0
        for call in rng.sample(train, cfg.batch):
            loss = _loss(net, call, guidance) / cfg.batch
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if tick:
            tick(step, total)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            state = {"net": net.state_dict(), "opt": opt.state_dict(), "rng": rng.getstate(), "step": step,
                     "record": record}  # fmt: skip
            tmp = file.with_suffix(".tmp")
            torch.save(state, tmp)
            tmp.replace(file)  # a crash leaves the last whole checkpoint
    record.update(steps=step, held_error_after=held_error(net, held, guidance))
    return record


def save_tuned(
    pipeline: Any, out: Path, record: dict[str, Any], force: bool = False, delta_bits: int = 0
) -> Path:
    """Write a plan directory: the plans the backbone was tuned with, and beside the plan it ran the
    tuned backbone with the tuning's record in its metadata: float16, or with `delta_bits` (8 or 4) its
    difference from the model's `dit.safetensors` (`seed_core.delta`). Returns that file."""
    from seed_core.delta import save_delta
    from seed_core.weights import save_safetensors

    runtime = pipeline.paro
    layouts = {key[:3] for key in runtime.prepared}
    if len(layouts) != 1:
        raise UsageError(f"tuning ran {len(layouts)} plan layouts; a tuned backbone fits one")
    stem = ParoPlan.file_stem(*layouts.pop())
    with atomic_dir(out, force=force) as tmp:  # the directory appears whole or not at all
        for file in Path(runtime.directory).iterdir():
            if file.suffix in (".json", ".safetensors") and not file.name.endswith(TUNED_SUFFIX):
                shutil.copy2(file, tmp / file.name)
        meta = {"seed_paro_tuned": json.dumps({"from": pipeline.spec.name, **record})}
        state, file = backbone(pipeline).state_dict(), tmp / f"{stem}{TUNED_SUFFIX}"
        if delta_bits:
            save_delta(state, pipeline.source, file, bits=delta_bits, metadata=meta)  # its dit.safetensors
        else:
            save_safetensors(state, file, metadata=meta, dtype="float16")
    return Path(out) / f"{stem}{TUNED_SUFFIX}"
