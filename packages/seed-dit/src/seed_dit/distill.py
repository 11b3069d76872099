"""Seedream as a distillation teacher (seed_core.distill.DistillTarget) and the student format.

The student is the same MMDiT (optionally with a guidance-scale embedding), sampled with Euler on a few
shifted steps; the text encoder and the VAE stay the teacher's. A student directory holds
`dit.safetensors` and `student.json` ({"steps", "shift", "guidance", "dit": config, "method", ...}).
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from seed_core.delta import load_weights
from seed_core.distill import DistillTarget, batched_cfg
from seed_core.errors import ConfigError
from seed_core.files import atomic_write_bytes
from seed_core.samplers import dual_cfg
from seed_core.weights import build_on_meta, cast_state_dict, load_into, save_safetensors
from seed_dit.config import TASKS, MMDiTConfig
from seed_dit.model import Conditioning, MMDiT

if TYPE_CHECKING:
    from seed_dit.pipeline import SeedreamPipeline

STUDENT_FILE = "student.json"


@dataclasses.dataclass
class Condition:
    """A batch of prompts encoded once: the conditional and the null (empty prompt) branch. An edit
    also has the image-only branch (the source, no instruction); its null branch has zero latents in
    place of the source, as `SeedreamPipeline.edit` samples."""

    full: Conditioning
    null: Conditioning
    prompts: list[str] = dataclasses.field(default_factory=list)
    image_only: Conditioning | None = None  # edits only
    image_guidance: float = 1.0  # edits: the image scale of the dual guidance


class SeedreamDistillTarget(DistillTarget):
    def __init__(self, pipeline: SeedreamPipeline, prompts: Sequence[str], size: tuple[int, int]) -> None:
        if not prompts:
            raise ConfigError("distillation needs at least one training prompt")
        self.pipeline, self.prompts_pool = pipeline, list(prompts)
        self.teacher = pipeline.dit.requires_grad_(False)
        for p in pipeline.text_encoder.parameters():  # type: ignore[attr-defined]
            p.requires_grad_(False)
        width, height = size
        f = pipeline.vae.factor
        self.latent = (pipeline.dit.cfg.in_channels, height // f, width // f)
        p = pipeline.dit.cfg.patch_size
        self.shift = pipeline.sampling_shift((height // f // p) * (width // f // p))
        self.default_guidance = pipeline.config.default_guidance
        self.default_edit_guidance = pipeline.config.default_edit_guidance
        self.guidance_interval = pipeline.config.guidance_interval
        depth = len(self.teacher.dual_blocks) + len(self.teacher.single_blocks)
        # three evenly spaced depths, the last one included (DMDX / FastGen: several heads on the teacher)
        self.depths = sorted({max(1, round(depth * k / 3)) for k in (1, 2, 3)})

    # --- conditions ---------------------------------------------------------------------------------

    def _encode(
        self, prompts: list[str], task: str = "generate", references: tuple[torch.Tensor, ...] = ()
    ) -> Conditioning:
        with torch.no_grad():
            emb = self.pipeline.text_encoder.encode(prompts, device=self.device)
        n = len(prompts)
        tasks = torch.full((n,), TASKS[task], device=self.device)
        return Conditioning(emb.tokens.float(), emb.mask, emb.pooled.float(), tasks, references=references)

    def sample_conditions(self, n: int, generator: torch.Generator) -> Condition:
        rng = random.Random(int(torch.randint(0, 2**62, (), generator=generator)))
        return self.conditions([rng.choice(self.prompts_pool) for _ in range(n)])

    def conditions(self, prompts: Sequence[str]) -> Condition:
        prompts = list(prompts)
        return Condition(self._encode(prompts), self._encode([""] * len(prompts)), prompts)

    def prompts(self, cond: Any) -> list[str]:
        assert isinstance(cond, Condition)
        return list(cond.prompts)

    def edit_conditions(self, sources: torch.Tensor, instructions: Sequence[str]) -> Condition:
        instructions = list(instructions)
        if sources.shape[0] != len(instructions):
            raise ConfigError(f"{sources.shape[0]} edit sources for {len(instructions)} instructions")
        refs = (sources.to(self.device).float(),)
        empty = self._encode([""] * len(instructions), "edit", refs)
        return Condition(
            self._encode(instructions, "edit", refs),
            dataclasses.replace(empty, references=(torch.zeros_like(refs[0]),)),
            instructions,
            image_only=empty,
            image_guidance=self.pipeline.config.default_image_guidance,
        )

    def is_edit(self, cond: Any) -> bool:
        assert isinstance(cond, Condition)
        return cond.image_only is not None

    def repeat_conditions(self, cond: Any, k: int) -> Condition:
        assert isinstance(cond, Condition)
        image_only = None if cond.image_only is None else _cat(*[cond.image_only] * k)
        return Condition(
            _cat(*[cond.full] * k),
            _cat(*[cond.null] * k),
            cond.prompts * k,
            image_only=image_only,
            image_guidance=cond.image_guidance,
        )

    def select_conditions(self, cond: Any, rows: torch.Tensor) -> Condition:
        assert isinstance(cond, Condition)
        return Condition(
            _take(cond.full, rows),
            _take(cond.null, rows),
            [cond.prompts[i] for i in rows.tolist()] if cond.prompts else [],
            image_only=None if cond.image_only is None else _take(cond.image_only, rows),
            image_guidance=cond.image_guidance,
        )

    def sample_noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn((n, *self.latent), generator=generator).to(self.device)

    # --- networks -----------------------------------------------------------------------------------

    def velocity(
        self,
        net: nn.Module,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: Any,
        guidance: float | torch.Tensor = 1.0,
    ) -> torch.Tensor:
        assert isinstance(net, MMDiT) and isinstance(cond, Condition)
        if cond.image_only is not None:
            # an edit, guided as `SeedreamPipeline.edit` guides it: three branches, `guidance` the text
            # scale, and no embedded scale even for a guidance-distilled student (the pipeline sets none)
            both = _cat(cond.full, cond.image_only, cond.null)
            full, image, null = net(x.repeat(3, 1, 1, 1), t.repeat(3), both).float().chunk(3)
            text = guidance.view(-1, 1, 1, 1) if isinstance(guidance, torch.Tensor) else guidance
            return dual_cfg(full, image, null, text, cond.image_guidance)
        if net.guidance_in is not None:  # a guidance-distilled student: the scale is an input
            g = torch.as_tensor(guidance, dtype=torch.float32, device=x.device).expand(x.shape[0])
            return net(x, t, dataclasses.replace(cond.full, guidance=g)).float()
        if isinstance(guidance, torch.Tensor) or guidance != 1.0:
            both = _cat(cond.full, cond.null)
            return batched_cfg(lambda x2, t2: net(x2, t2, both).float(), x, t, guidance)
        return net(x, t, cond.full).float()

    def conditional_velocity(
        self, net: nn.Module, x: torch.Tensor, t: torch.Tensor, cond: Any
    ) -> torch.Tensor:
        assert isinstance(net, MMDiT) and isinstance(cond, Condition)
        if net.guidance_in is not None:  # a guidance-distilled student: scale 1 is its unguided branch
            return self.velocity(net, x, t, cond, 1.0)
        return net(x, t, cond.full).float()

    def features(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor, cond: Any) -> list[torch.Tensor]:
        assert isinstance(net, MMDiT) and isinstance(cond, Condition)
        found: dict[int, torch.Tensor] = {}
        n_img = (x.shape[-2] // net.cfg.patch_size) * (x.shape[-1] // net.cfg.patch_size)
        lt = cond.full.text.shape[1]  # single blocks: text, the image, then any reference images
        blocks = [*net.dual_blocks, *net.single_blocks]
        handles = []
        for depth in self.depths:

            def keep(_m: nn.Module, _i: Any, out: Any, depth: int = depth) -> None:
                tokens = out[0] if isinstance(out, tuple) else out  # dual: (img, txt); single: text + image
                found[depth] = tokens[:, :n_img] if isinstance(out, tuple) else tokens[:, lt : lt + n_img]

            handles.append(blocks[depth - 1].register_forward_hook(keep))
        try:
            net(x, t, cond.full)
        finally:
            for h in handles:
                h.remove()
        return [found[d].float() for d in self.depths]

    def embeds_guidance(self, net: nn.Module) -> bool:
        return getattr(net, "guidance_in", None) is not None

    def feature_dims(self) -> list[int]:
        return [self.teacher.cfg.hidden] * len(self.depths)

    def make_student(self, guidance_embed: bool = False) -> nn.Module:
        cfg = dataclasses.replace(self.teacher.cfg, guidance_embed=guidance_embed)
        student = MMDiT(cfg).to(self.device)
        missing, _ = student.load_state_dict(self.teacher.state_dict(), strict=False)
        if guidance_embed:  # the new embedding starts at zero output: the student starts as the teacher
            assert student.guidance_in is not None
            nn.init.zeros_(student.guidance_in.fc2.weight)
            nn.init.zeros_(student.guidance_in.fc2.bias)
        assert all(k.startswith("guidance_in.") for k in missing), missing
        return student.float().requires_grad_(True).train()

    def load_student(self, directory: Path) -> nn.Module:
        net, _ = load_student(directory, torch.float32, self.device, self.pipeline.source)
        ours = dataclasses.replace(self.teacher.cfg, guidance_embed=net.cfg.guidance_embed).to_dict()
        theirs = net.cfg.to_dict()
        changed = [k for k in ours if ours[k] != theirs.get(k)]
        if changed:
            k = changed[0]
            raise ConfigError(
                f"{directory}: the student's DiT differs from the teacher's ({k}: {theirs.get(k)} against "
                f"{ours[k]}); continue only from a student of this teacher"
            )
        return net.float().requires_grad_(True).train()

    def save_student(self, net: nn.Module, directory: Path, info: dict[str, Any]) -> None:
        assert isinstance(net, MMDiT)
        directory.mkdir(parents=True, exist_ok=True)
        save_safetensors(net.state_dict(), directory / "dit.safetensors", dtype="float16", force=True)
        record = {"shift": self.shift, **info, "dit": net.cfg.to_dict()}
        atomic_write_bytes(
            directory / STUDENT_FILE, (json.dumps(record, indent=2) + "\n").encode(), force=True
        )

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return self.pipeline.vae.decode(x).float()

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.pipeline.vae.encode(pixels.to(self.device)).float()


def _cat(*parts: Conditioning) -> Conditioning:
    """Conditionings stacked along the batch (their references too: each has the same count)."""
    return Conditioning(
        torch.cat([c.text for c in parts]),
        torch.cat([c.text_mask for c in parts]),
        torch.cat([c.pooled for c in parts]),
        torch.cat([c.task for c in parts]),
        references=tuple(torch.cat(refs) for refs in zip(*[c.references for c in parts], strict=True)),
    )


def _take(c: Conditioning, rows: torch.Tensor) -> Conditioning:
    """The batch rows `rows` of a conditioning (its references and per-row fields too)."""
    rows = rows.to(c.text.device)
    fields = {f.name: getattr(c, f.name) for f in dataclasses.fields(c)}
    per_row = {name: value[rows] for name, value in fields.items() if isinstance(value, torch.Tensor)}
    return dataclasses.replace(c, **per_row, references=tuple(r[rows] for r in c.references))


def load_student(
    directory: Path, dtype: torch.dtype, device: torch.device, teacher: str | Path | None = None
) -> tuple[MMDiT, dict[str, Any]]:
    """A student directory -> (its MMDiT, its info); mismatched weights are refused by key and shape.
    A student stored as a difference from its teacher (`seed_core.delta`) is added to the weights in the
    `teacher` model directory."""
    path = directory / STUDENT_FILE
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{directory}: no {STUDENT_FILE}; not a distilled student (see `seed distill`)"
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg})") from None
    for key in ("steps", "dit"):
        if key not in info:
            raise ConfigError(f"{path}: missing '{key}'")
    cfg = MMDiTConfig.from_dict(info["dit"])
    dit = build_on_meta(lambda: MMDiT(cfg))
    weights = directory / "dit.safetensors"
    state = cast_state_dict(load_weights(weights, teacher), dtype)
    load_into(dit, state, source=str(weights))
    return dit.to(device).eval(), info
