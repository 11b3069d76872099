"""A bank of teacher ODE pairs (noise, the teacher's sample from it, the prompt), made once and reused.

Methods that learn from the teacher's ODE (`kd`, `adp`) otherwise run the teacher's whole trajectory with
CFG for every sample of every step: 2 x `teacher_steps` network calls a sample, most of a step's cost. A bank
(`seed distill --pairs DIR`) pays that once; epochs over it cost only the student. Layout: one
`DIR/pairs.safetensors` holding `noise` and `x0` (fp16) and, in its metadata, the prompts, what made the
pairs (teacher, steps, guidance, shift, precision, seed) and the generator's state, so an interrupted build
continues where it stopped and gives the same bank as an uninterrupted one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seed_core.distill import DistillTarget
from seed_core.errors import ConfigError, UsageError
from seed_core.samplers import flow_timesteps
from seed_core.weights import save_safetensors
from seed_distill import losses as L

FILE = "pairs.safetensors"
CHUNK = 64  # pairs drawn at a time (and written every `save_every` chunks)


@dataclass
class PairBank:
    """Teacher ODE pairs: `noise` and `x0` (N, ...) and their prompts."""

    noise: torch.Tensor
    x0: torch.Tensor
    prompts: list[str]

    def __len__(self) -> int:
        return len(self.prompts)

    def batch(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """`n` pairs drawn with replacement: (noise, x0) as float32, and their prompts."""
        index = torch.randint(0, len(self), (n,), generator=generator)
        rows = index.to(self.noise.device)
        return self.noise[rows].float(), self.x0[rows].float(), [self.prompts[int(i)] for i in index]


def _read(directory: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import SafetensorError, safe_open

    path = directory / FILE
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            info = json.loads((f.metadata() or {}).get("seed_pairs", "null"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable pair bank ({exc}); remove it to make it again") from None
    for key in ("noise", "x0", "generator"):
        if key not in tensors:
            raise ConfigError(f"{path}: no '{key}' tensor; not a pair bank (remove it to make it again)")
    if not isinstance(info, dict) or not isinstance(info.get("prompts"), list):
        raise ConfigError(f"{path}: no 'seed_pairs' metadata with the prompts; not a pair bank")
    n = len(info["prompts"])
    if len(tensors["noise"]) != n or tensors["x0"].shape != tensors["noise"].shape:
        raise ConfigError(
            f"{path}: {n} prompts but noise {tuple(tensors['noise'].shape)} and x0 "
            f"{tuple(tensors['x0'].shape)}; the bank is corrupt, remove it to make it again"
        )
    return tensors, info


def _write(
    directory: Path,
    noise: list[torch.Tensor],
    x0: list[torch.Tensor],
    prompts: list[str],
    info: dict[str, Any],
    generator: torch.Generator,
) -> None:
    tensors = {
        "noise": torch.cat(noise).half(),
        "x0": torch.cat(x0).half(),
        "generator": generator.get_state(),
    }
    meta = {"seed_pairs": json.dumps({**info, "prompts": prompts})}
    save_safetensors(tensors, directory / FILE, metadata=meta, force=True)


def pair_bank(
    target: DistillTarget,
    directory: Path,
    count: int,
    *,
    teacher: str,
    teacher_steps: int,
    guidance: float,
    seed: int = 0,
    precision: str = "fp32",
    progress: Callable[[int, int], None] | None = None,
    save_every: int = 10,
) -> PairBank:
    """The bank in `directory`, made (or completed) to `count` pairs first, rounded up to whole chunks of
    64 (so that a build resumed from any save draws what an uninterrupted one draws): the teacher's Euler
    ODE with CFG at `guidance` over `teacher_steps` from fresh noise, for prompts the target draws. A bank
    made otherwise (another teacher, steps, guidance, shift, precision, seed or latent shape) is refused
    with what differs; one with more pairs than `count` is used whole."""
    if precision not in ("fp32", "bf16"):
        raise UsageError(f"--pair-precision {precision}: use fp32 or bf16")
    if count < 1:
        raise UsageError(f"--pair-count {count}: give at least one pair")
    directory = Path(directory)
    made = {
        "teacher": teacher,
        "teacher_steps": teacher_steps,
        "guidance": float(guidance),
        "shift": float(target.shift),
        "precision": precision,
        "seed": seed,
        "guidance_interval": [float(v) for v in target.guidance_interval],
    }
    generator = torch.Generator().manual_seed(seed)
    noise: list[torch.Tensor] = []
    x0: list[torch.Tensor] = []
    prompts: list[str] = []
    shape = tuple(target.sample_noise(1, torch.Generator().manual_seed(0)).shape[1:])
    if (directory / FILE).is_file():
        tensors, info = _read(directory)
        # banks made before guidance intervals existed were guided at every noise level
        info.setdefault("guidance_interval", [0.0, 1.0])
        for key, value in made.items():
            if info.get(key) != value:
                raise UsageError(
                    f"--pairs {directory}: its pairs were made with {key}={info.get(key)!r}, this run's is "
                    f"{value!r}; give another --pairs directory or match the option"
                )
        if tuple(tensors["noise"].shape[1:]) != shape:
            raise UsageError(
                f"--pairs {directory}: its latents are {tuple(tensors['noise'].shape[1:])}, this teacher's "
                f"are {shape} (another size?); give another --pairs directory"
            )
        noise, x0, prompts = [tensors["noise"]], [tensors["x0"]], list(info["prompts"])
        generator.set_state(tensors["generator"])
    grid = flow_timesteps(teacher_steps, target.shift, device=target.device)
    chunks, n = 0, CHUNK
    while len(prompts) < count:
        with torch.no_grad(), torch.autocast(target.device.type, torch.bfloat16, enabled=precision == "bf16"):
            cond = target.sample_conditions(n, generator)  # the text encoder runs in the bank's precision too
            x = target.sample_noise(n, generator)
            noise.append(x.cpu())
            for i in range(teacher_steps):
                t, s = grid[i].expand(n), grid[i + 1].expand(n)
                x = L.euler_jump(x, t, target.teacher_velocity(x, t, cond, guidance).float(), s)
        x0.append(x.float().cpu())
        prompts += target.prompts(cond)
        chunks += 1
        if progress is not None:
            progress(len(prompts), count)
        if chunks % save_every == 0 or len(prompts) >= count:
            _write(directory, noise, x0, prompts, made, generator)
    # fp16 in memory as on disk: a bank read back is the bank that was made
    bank_noise, bank_x0 = torch.cat(noise).half(), torch.cat(x0).half()
    return PairBank(bank_noise.to(target.device), bank_x0.to(target.device), prompts)
