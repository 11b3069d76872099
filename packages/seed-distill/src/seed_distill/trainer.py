"""The distillation trainer: recipes (stages of methods), data parallelism over torchrun ranks, gradient
accumulation, EMA of the student, atomic checkpoints with resume, JSON-lines logs.

Sharding: the global batch of a step is `shards` micro-batches of `batch` samples; micro-batch j is drawn
from its own generator seeded by (seed, step, phase, j), and rank r of R runs shards r, r + R, ... So one
process with `shards = 2` and two processes with one shard each see the same samples, and (gradients
averaged by all-reduce, DDP's rule) follow the same loss curve.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from torch import nn

from seed_core.budget import TimeBudget
from seed_core.distill import DistillTarget
from seed_core.errors import SeedError, UsageError
from seed_core.files import atomic_path
from seed_distill.methods import METHODS, Method, Options, full_state

CHECKPOINT = "checkpoint.pt"


class DivergedError(SeedError):
    """A loss became NaN or infinite."""


LOG = "log.jsonl"


@dataclass(frozen=True)
class Stage:
    method: str
    share: float  # of the run's steps
    options: dict[str, Any] = field(default_factory=dict)  # overrides of the run's Options


#: recipes are data: saved with the student (recipe.json)
RECIPES: dict[str, tuple[Stage, ...]] = {
    # DMDX: adversarial pre-training on ODE pairs, then adversarial distribution matching
    "dmdx": (Stage("adp", 0.3), Stage("adm", 0.7)),
    # Hyper-Bagel: CFG distillation, segmented consistency, then distribution matching
    "hyper": (Stage("cfg", 0.2), Stage("tscd", 0.4), Stage("adm", 0.4)),
}


#: Hyper-Bagel's one-step finish: TSCD's segments shrink 4 -> 2 -> 1 (Hyper-SD), then ADM and ADP on the
#: teacher's ODE pairs plus the reward term (whose weight comes from --reward / --reward-weight)
ONE_STEP_FINISH: dict[str, tuple[Stage, ...]] = {
    "hyper": (
        Stage("cfg", 0.1),
        Stage("tscd", 0.15, {"steps": 4}),
        Stage("tscd", 0.15, {"steps": 2}),
        Stage("tscd", 0.15, {"steps": 1}),
        Stage("adm", 0.2),
        Stage("adp", 0.25),
    ),
}


def recipe_stages(method: str | None, recipe: str | None, student_steps: int = 4) -> tuple[Stage, ...]:
    if (method is None) == (recipe is None):
        raise UsageError("give one of --method or --recipe")
    if recipe is not None:
        if recipe not in RECIPES:
            raise UsageError(f"unknown recipe '{recipe}'; recipes: {', '.join(RECIPES)}")
        if student_steps == 1 and recipe in ONE_STEP_FINISH:
            return ONE_STEP_FINISH[recipe]
        return RECIPES[recipe]
    assert method is not None
    if method not in METHODS:
        raise UsageError(f"unknown distillation method '{method}'; methods: {', '.join(METHODS)}")
    return (Stage(method, 1.0),)


def stage_bounds(stages: Sequence[Stage], steps: int) -> list[int]:
    """Cumulative end step of each stage (the last ends at `steps`)."""
    total = sum(s.share for s in stages)
    ends, acc = [], 0.0
    for s in stages:
        acc += s.share / total
        ends.append(round(acc * steps))
    ends[-1] = steps
    return ends


def stage_start(ends: Sequence[int], index: int) -> int:
    """The first step of stage `index` (the end of the one before it)."""
    return ends[index - 1] if index > 0 else 0


def replan(stages: Sequence[Stage], ends: Sequence[int], index: int, step: int, total: int) -> list[int]:
    """Stage ends for a run re-planned to `total` steps after `step` steps, in stage `index`: the stages
    before it keep their ends, and the steps left are shared by the rest of this stage (the share of it
    not yet run) and the later stages (their shares), so no stage is skipped or run twice."""
    shares = [s.share for s in stages]
    begin = stage_start(ends, index)
    done = (step - begin) / max(ends[index] - begin, 1)
    weights = [shares[index] * max(0.0, 1.0 - done), *shares[index + 1 :]]
    left, acc, new = total - step, 0.0, list(ends[:index])
    for w in weights:
        acc += w / (sum(weights) or 1.0)
        new.append(step + round(acc * left))
    new[-1] = total
    return new


# --- distributed ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_world() -> World:
    """Join the torchrun group when launched by torchrun (gloo on the CPU, nccl on CUDA), else one rank."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not dist.is_initialized():  # gloo for the CPU tensors (step counts, loss sums) beside nccl
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    return World(dist.get_rank(), dist.get_world_size())


def leave_world(world: World, failed: bool = False) -> None:
    """Leave the torchrun group cleanly: a rank that exits with gloo's threads still up can abort. A
    failed rank skips the barrier, since the other ranks may never reach it."""
    if world.size > 1 and dist.is_initialized():
        if not failed:
            dist.barrier()
        dist.destroy_process_group()


def exit_rank() -> NoReturn:
    """End a torchrun rank that has left its group (`leave_world`) and saved its work, without the
    interpreter's finalisation: gloo's worker threads can outlive the destroyed group and abort the
    process as it is torn down ("terminate called without an active exception", seen when an FSDP run
    cut after step 4 ended), which torchrun reports as a failed run."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _all_sum(x: torch.Tensor, world: World) -> torch.Tensor:
    if world.size > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def _agreed_steps(steps: int, world: World) -> int:
    """Rank 0's step count, so every rank follows one plan and stops at the same step."""
    if world.size == 1:
        return steps
    x = torch.tensor([steps], dtype=torch.int64)
    dist.broadcast(x, src=0)
    return int(x)


# --- EMA --------------------------------------------------------------------------------------------


class StudentEMA:
    """EMA of the student's floats; the decay warms up as min(decay, (1 + n) / (10 + n))."""

    def __init__(self, decay: float) -> None:
        self.decay, self.updates, self.shadow = decay, 0, None  # type: float, int, dict[str, torch.Tensor] | None

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        state = full_state(model)  # whole tensors under FSDP2 too (a gather every step)
        if self.shadow is None:
            self.shadow = {k: v.detach().clone() for k, v in state.items()}
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        for k, v in state.items():
            if v.is_floating_point():
                self.shadow[k].lerp_(v.detach(), 1 - decay)
            else:
                self.shadow[k].copy_(v)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay, self.updates, self.shadow = state["decay"], state["updates"], state["shadow"]


# --- the run ----------------------------------------------------------------------------------------


@dataclass
class RunConfig:
    steps: int = 1000
    batch: int = 8  # samples per micro-batch
    shards: int = 1  # micro-batches per step over all ranks (global batch = batch x shards)
    seed: int = 0
    ema: float = 0.99  # 0: export the raw student
    checkpoint_every: int = 100
    clip: float = 1.0
    fsdp: bool = False  # shard the trainable networks with FSDP2 over the ranks (else replicate them)
    minutes: float | None = None  # end within this wall time: the step count follows the measured rate


def _generator(seed: int, step: int, phase: int, shard: int) -> torch.Generator:
    mixed = (seed * 1_000_003 + step) * 1_009 + phase * 101 + shard
    return torch.Generator().manual_seed(mixed % (2**63))


def distill(
    target: DistillTarget,
    out: Path,
    stages: Sequence[Stage],
    options: Options,
    run: RunConfig,
    *,
    resume: bool = False,
    teacher: str = "",
    world: World | None = None,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    stop_after: int | None = None,
    init: nn.Module | None = None,
) -> Path:
    """Train a student of `target` through `stages` and write it to `out / "student"`; returns that path.

    Resumes from `out / checkpoint.pt` when `resume`; `stop_after` ends the run early after that many
    steps (tests use it to simulate a crash). `init` (a student of this teacher, `target.load_student`)
    is where the student starts instead of the teacher: later stages of a recipe run as their own runs."""
    world = world or World()
    if run.shards % world.size:
        raise UsageError(
            f"--shards {run.shards} must be a multiple of the number of processes ({world.size})"
        )
    ckpt_path = out / CHECKPOINT
    torch.manual_seed(run.seed)
    embed = any(METHODS[s.method].guidance_embed for s in stages)
    student = target.make_student(guidance_embed=embed or (init is not None and target.embeds_guidance(init)))
    if init is not None:
        # a student without a guidance embedding continued by `cfg` keeps make_student's zero-output one
        _, unexpected = student.load_state_dict(init.state_dict(), strict=False)
        assert not unexpected, unexpected
    ema = StudentEMA(run.ema)
    ends = stage_bounds(stages, run.steps)
    sharded = run.fsdp and world.size > 1
    wrap = _fsdp_shard if sharded else None
    step, state = 0, None
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=target.device, weights_only=False)
        step = int(state["step"])
        student.load_state_dict(state["student"])  # whole tensors, before sharding
        ema.load_state_dict(state["ema"])
        if world.main:  # drop log lines of steps after the checkpoint: they are run again
            kept = [e for e in read_log(out) if e["step"] <= step]
            (out / LOG).write_text("".join(json.dumps(e) + "\n" for e in kept), encoding="utf-8")
    if wrap is not None:
        student = wrap(student)
    out.mkdir(parents=True, exist_ok=True)
    method: Method | None = None
    current = -1
    floor = 0 if state is None else int(state["stage"])  # a resumed run goes on in its saved stage
    if state is not None and run.minutes is not None and "ends" in state:
        # a budgeted run's plan moved the stage ends: continue from them, towards the steps asked for now
        ends = replan(stages, state["ends"], floor, step, run.steps)
    start = time.perf_counter()
    budget = None if run.minutes is None else TimeBudget(60 * run.minutes, run.steps, start=step)
    while step < run.steps:
        index = max(current, floor, next(i for i, end in enumerate(ends) if step < end))
        if index != current:  # a new stage: its networks start from the teacher, the student carries on
            stage = stages[index]
            torch.manual_seed(run.seed * 1000 + index)  # new heads start the same after a resume
            method = METHODS[stage.method](target, student, replace(options, **stage.options), wrap)
            current = index
            if state is not None and state.get("stage") == index:
                _load_method(method, state, sharded)
            state = None
        assert method is not None
        method.stage_step = step - stage_start(ends, index)
        record: dict[str, float] = {}
        for p_index, phase in enumerate(method.phases(step)):
            phase.optimizer.zero_grad(set_to_none=True)
            total = torch.zeros((), dtype=torch.float64)
            for shard in range(world.rank, run.shards, world.size):
                loss = phase.loss(_generator(run.seed, step, p_index, shard), run.batch)
                if not torch.isfinite(loss):  # stop before the weights are poisoned; the checkpoint stays
                    raise DivergedError(
                        f"the {phase.name} loss of '{method.name}' is {float(loss)} at step {step + 1}; "
                        f"lower the learning rate and --resume from step {step - step % run.checkpoint_every}"
                    )
                # FSDP2 averages gradients over the ranks itself, so undo its division by the world size
                (loss * (world.size if sharded else 1) / run.shards).backward()
                total += float(loss.detach())
            for p in phase.params if not sharded else ():  # DDP's rule: the mean over all micro-batches
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                _all_sum(p.grad, world)
            if run.clip > 0:
                torch.nn.utils.clip_grad_norm_(phase.params, run.clip)
            phase.optimizer.step()
            record[phase.name] = float(_all_sum(total, world)) / run.shards
        method.after_step()
        record.update(method.stats)  # e.g. the mean reward of the step's generated samples
        method.stats.clear()
        ema.update(student)
        step += 1
        if budget is not None:
            planned = _agreed_steps(budget.plan(step, run.steps), world)
            if planned != run.steps:
                ends = replan(stages, ends, index, step, planned)
                run = replace(run, steps=planned)
        if world.main:
            entry = {"step": step, "stage": index, "method": method.name, **record}
            with open(out / LOG, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
            if progress:
                progress(step, run.steps, record)
        if step % run.checkpoint_every == 0 or step == run.steps:
            _checkpoint(ckpt_path, step, index, ends, student, ema, method, world, sharded)
        if stop_after is not None and step >= stop_after:
            return out / "student"
    assert method is not None
    path = out / "student"
    whole = full_state(student) if run.ema <= 0 or ema.shadow is None else ema.shadow  # all ranks gather
    if world.main:
        final = target.make_student(guidance_embed=target.embeds_guidance(student))
        final.load_state_dict(whole)
        # an edit's scale, where the teacher's sampler edits at another one than it draws at
        edit_scale = None
        if target.default_edit_guidance is not None and target.embeds_guidance(student):
            edit_scale = method.scale(edit=True)
        info = {
            "steps": options.steps,
            "guidance": method.w if target.embeds_guidance(student) else 1.0,
            **({"edit_guidance": edit_scale} if edit_scale is not None else {}),
            "teacher": teacher,
            # the noise levels its teacher was guided at (its own sampling takes `guidance_interval`, if any)
            "teacher_guidance_interval": list(target.guidance_interval),
            "name": options.extra.get("name") or "+".join(s.method for s in stages),
            "method": "+".join(s.method for s in stages),
            "recipe": [asdict(s) for s in stages],
            **({"init": str(options.extra["init"])} if "init" in options.extra else {}),
            **options.extra.get("carried", {}),  # the --init student's own sampling settings
            **({"edits": str(options.extra["edits_dir"])} if "edits_dir" in options.extra else {}),
            **({"pairs": str(options.extra["pairs_dir"])} if "pairs_dir" in options.extra else {}),
            "options": {k: v for k, v in asdict(options).items() if k != "extra"},
            "run": asdict(run),
            "ranks": world.size,
            "seconds": round(time.perf_counter() - start, 1),
        }
        target.save_student(final, path, info)
    if world.size > 1:
        dist.barrier()
    return path


def _fsdp_shard(module: nn.Module) -> nn.Module:
    from torch.distributed.fsdp import fully_shard

    fully_shard(module)
    return module


def _owners(method: Method) -> dict[str, nn.Module]:
    """The network each optimizer of `method` trains (FSDP2 state dicts need the pair)."""
    return {"generator": method.student, **method.modules()}


def _optimizer_state(method: Method, name: str, opt: torch.optim.Optimizer, sharded: bool) -> Any:
    if not sharded:
        return opt.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    full = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_optimizer_state_dict(_owners(method)[name], opt, options=full)


def _load_method(method: Method, state: dict[str, Any], sharded: bool) -> None:
    """Restore a stage's critics and optimizers from a checkpoint (whole tensors on every rank)."""
    if not sharded:
        for name, module in method.modules().items():
            module.load_state_dict(state["modules"][name])
        for name, opt in method.optimizers().items():
            opt.load_state_dict(state["optimizers"][name])
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    full = StateDictOptions(full_state_dict=True)
    for name, module in method.modules().items():
        if any(hasattr(p, "full_tensor") for p in module.parameters()):
            set_model_state_dict(module, state["modules"][name], options=full)
        else:
            module.load_state_dict(state["modules"][name])
    for name, opt in method.optimizers().items():
        set_optimizer_state_dict(_owners(method)[name], opt, state["optimizers"][name], options=full)


def _checkpoint(
    path: Path,
    step: int,
    stage: int,
    ends: Sequence[int],
    student: nn.Module,
    ema: StudentEMA,
    method: Method,
    world: World,
    sharded: bool = False,
) -> None:
    if not (world.main or sharded):  # gathering FSDP2 shards is a collective: every rank takes part
        return
    state = {
        "step": step,
        "stage": stage,
        "ends": list(ends),  # the plan (a time budget moves it)
        "student": full_state(student),
        "ema": ema.state_dict(),
        "modules": {k: full_state(m) for k, m in method.modules().items()},
        "optimizers": {k: _optimizer_state(method, k, o, sharded) for k, o in method.optimizers().items()},
    }
    if world.main:
        with atomic_path(path, force=True) as tmp:
            torch.save(state, tmp)


def read_log(out: Path) -> list[dict[str, Any]]:
    path = out / LOG
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
