"""diffusers flow-matching transformers (SD3, Flux, Wan) as distillation teachers, and their students.

The protocol's convention is diffusers' own: ``x_t = (1 - t) x0 + t noise`` and the transformer predicts
``noise - x0``; only the time scale differs (SD3 and Wan take t x 1000, Flux takes t). Latents are kept
unpacked ((B, C, H, W), or (B, C, F, H, W) for Wan) and Flux's 2x2 packing happens inside `velocity`.

A student is written as a complete diffusers pipeline folder (the teacher's components, the student's
transformer) whose scheduler is Euler at the teacher's shift without dynamic shifting, plus `student.json`
with its steps and the unshifted `sigmas`: diffusers runs it with ``pipe(..., num_inference_steps=N,
sigmas=SIGMAS, guidance_scale=1)``; `-m diffusers:DIR` and `--accel METHOD:path=DIR` do that themselves.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from seed_core.distill import DistillTarget, batched_cfg
from seed_core.errors import ConfigError
from seed_core.files import atomic_dir
from seed_core.weights import list_tensors
from seed_diffusers.attention import route
from seed_diffusers.families import flux_image_ids

if TYPE_CHECKING:
    from seed_diffusers.pipeline import DiffusersPipeline

STUDENT_FILE = "student.json"  # the name `--accel METHOD:path=` checks (method, steps)
VIDEO_FRAMES = 17  # frames of a Wan training clip (4n + 1)


@dataclass
class Condition:
    """Encoded prompts: the transformer's text keyword arguments, for the prompts and the empty prompt."""

    full: dict[str, torch.Tensor]
    null: dict[str, torch.Tensor] | None
    prompts: list[str] = field(default_factory=list)


def _cat(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v if k == "txt_ids" else torch.cat((v, b[k])) for k, v in a.items()}


def teacher_shift(pipe: Any, tokens: int) -> float:
    """The shift of the pipeline's scheduler at `tokens` image tokens (Flux's dynamic shift is exp(mu))."""
    config = pipe.scheduler.config
    if "flow_shift" in config and config.get("use_flow_sigmas", True):  # UniPC / DPM++ (Wan folders)
        return float(config["flow_shift"] or 1.0)
    if not config.get("use_dynamic_shifting", False):
        return float(config.get("shift", 1.0))
    base, top = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    lo, hi = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
    mu = lo + (hi - lo) / (top - base) * (tokens - base)
    return math.exp(mu)


class DiffusersDistillTarget(DistillTarget):
    def __init__(self, pipeline: DiffusersPipeline, prompts: Sequence[str], size: tuple[int, int]) -> None:
        if not prompts:
            raise ConfigError("distillation needs at least one training prompt")
        self.pipeline, self.pipe, self.family = pipeline, pipeline.pipe, pipeline.family.short
        self.prompts_pool = list(prompts)
        self.teacher = self.pipe.transformer.requires_grad_(False)
        for name in ("text_encoder", "text_encoder_2", "text_encoder_3", "vae"):
            if getattr(self.pipe, name, None) is not None:
                getattr(self.pipe, name).requires_grad_(False)
        width, height = size
        cfg = self.teacher.config
        if self.family == "wan":
            f, ft = self.pipe.vae_scale_factor_spatial, self.pipe.vae_scale_factor_temporal
            self.latent: tuple[int, ...] = (
                cfg.in_channels,
                (VIDEO_FRAMES - 1) // ft + 1,
                height // f,
                width // f,
            )
            tokens = math.prod(self.latent[1:]) // math.prod(cfg.patch_size)
        elif self.family == "flux":
            f = self.pipe.vae_scale_factor * 2  # latents are packed 2x2
            self.latent = (cfg.in_channels // 4, height // f * 2, width // f * 2)
            tokens = (height // f) * (width // f)
        else:
            f = self.pipe.vae_scale_factor
            self.latent = (cfg.in_channels, height // f, width // f)
            tokens = (height // f // cfg.patch_size) * (width // f // cfg.patch_size)
        self.size = (width, height)
        self.shift = teacher_shift(self.pipe, tokens)
        # Flux-dev's guidance is an embedded input, not CFG: its teacher is sampled without a null branch
        self.default_guidance = 1.0 if self.family == "flux" else pipeline.family.default_guidance
        blocks = self._blocks(self.teacher)
        self.depths = sorted({max(1, round(len(blocks) * k / 3)) for k in (1, 2, 3)})

    # --- conditions ---------------------------------------------------------------------------------

    def _encode(self, prompts: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
        device, n = self.device, len(prompts)
        # the text length the pipeline's own call uses (Wan's encode_prompt defaults to a shorter one)
        length = inspect.signature(self.pipe.__call__).parameters["max_sequence_length"].default
        with torch.no_grad():
            if self.family == "sd3":
                emb, neg, pooled, neg_pooled = self.pipe.encode_prompt(
                    prompt=prompts, prompt_2=None, prompt_3=None, device=device,
                    do_classifier_free_guidance=True, negative_prompt=[""] * n, max_sequence_length=length,
                )  # fmt: skip
                return (
                    {"encoder_hidden_states": emb, "pooled_projections": pooled},
                    {"encoder_hidden_states": neg, "pooled_projections": neg_pooled},
                )
            if self.family == "flux":
                emb, pooled, ids = self.pipe.encode_prompt(
                    prompt=prompts, prompt_2=None, device=device, max_sequence_length=length
                )
                return {"encoder_hidden_states": emb, "pooled_projections": pooled, "txt_ids": ids}, None
            emb, neg = self.pipe.encode_prompt(
                prompt=prompts, negative_prompt=[""] * n, do_classifier_free_guidance=True, device=device,
                max_sequence_length=length,
            )  # fmt: skip
            return {"encoder_hidden_states": emb}, {"encoder_hidden_states": neg}

    def sample_conditions(self, n: int, generator: torch.Generator) -> Condition:
        rng = random.Random(int(torch.randint(0, 2**62, (), generator=generator)))
        return self.conditions([rng.choice(self.prompts_pool) for _ in range(n)])

    def conditions(self, prompts: Sequence[str]) -> Condition:
        full, null = self._encode(list(prompts))
        return Condition(full, null, list(prompts))

    def prompts(self, cond: Any) -> list[str]:
        return list(cond.prompts)

    def sample_noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn((n, *self.latent), generator=generator).to(self.device)

    # --- networks -----------------------------------------------------------------------------------

    def _call(
        self, net: nn.Module, x: torch.Tensor, t: torch.Tensor, text: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        dtype = next(net.parameters()).dtype
        text = {k: v.to(dtype) if v.is_floating_point() and k != "txt_ids" else v for k, v in text.items()}
        if self.family == "flux":
            b, c, h, w = x.shape
            packed = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * 4)
            ids = flux_image_ids(h // 2, w // 2, x.device)
            embed = getattr(net.config, "guidance_embeds", False)
            guidance = (
                torch.full((b,), self.pipeline.family.default_guidance, device=x.device) if embed else None
            )
            out = net(
                hidden_states=packed.to(dtype), timestep=t.to(dtype), guidance=guidance,
                img_ids=ids.to(dtype), return_dict=False, **text,
            )[0]  # fmt: skip
            return out.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w).float()
        out = net(hidden_states=x.to(dtype), timestep=(t * 1000).to(dtype), return_dict=False, **text)[0]
        return out.float()

    def velocity(
        self,
        net: nn.Module,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: Any,
        guidance: float | torch.Tensor = 1.0,
    ) -> torch.Tensor:
        if not isinstance(cond, Condition):
            raise TypeError(f"expected a Condition from sample_conditions, got {type(cond).__name__}")
        if cond.null is not None and (isinstance(guidance, torch.Tensor) or guidance != 1.0):
            both = _cat(cond.full, cond.null)
            return batched_cfg(lambda x2, t2: self._call(net, x2, t2, both), x, t, guidance)
        return self._call(net, x, t, cond.full)

    def _blocks(self, net: nn.Module) -> list[nn.Module]:
        return list(getattr(net, "transformer_blocks", None) or net.blocks)

    def features(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor, cond: Any) -> list[torch.Tensor]:
        n_img = math.prod(self.latent[1:]) // math.prod(self._patch(net))
        found: dict[int, torch.Tensor] = {}
        handles = []
        blocks = self._blocks(net)
        for depth in self.depths:

            def keep(_m: nn.Module, _i: Any, out: Any, depth: int = depth) -> None:
                # SD3 / Flux blocks return (text, image), Wan blocks the image tokens
                image = out[-1] if isinstance(out, tuple) else out
                found[depth] = image[:, -n_img:]

            handles.append(blocks[depth - 1].register_forward_hook(keep))
        try:
            self._call(net, x, t, cond.full)
        finally:
            for h in handles:
                h.remove()
        return [found[d].float() for d in self.depths]

    def _patch(self, net: nn.Module) -> tuple[int, ...]:
        p = net.config.patch_size
        if self.family == "flux":
            return (2, 2)
        return tuple(p) if isinstance(p, (list, tuple)) else (p, p)

    def feature_dims(self) -> list[int]:
        cfg = self.teacher.config
        return [cfg.num_attention_heads * cfg.attention_head_dim] * len(self.depths)

    def make_student(self, guidance_embed: bool = False) -> nn.Module:
        if guidance_embed:
            raise NotImplementedError("diffusers transformers are not given a guidance embedding here")
        # a fresh module (no routing hooks), built on the meta device and given float32 copies
        return _rebuild(self.teacher, torch.float32).to(self.device).requires_grad_(True).train()

    def save_student(self, net: nn.Module, directory: Path, info: dict[str, Any]) -> None:
        from diffusers import FlowMatchEulerDiscreteScheduler

        steps = int(info["steps"])
        sigmas = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)[:-1].tolist()
        record = {
            **info,
            "family": self.family,
            "shift": self.shift,
            "sigmas": sigmas,
            "size": list(self.size),
        }
        if getattr(
            self.teacher.config, "guidance_embeds", False
        ):  # what the student saw as its guidance input
            record["guidance"] = self.pipeline.family.default_guidance
        source = self.pipeline.path
        with atomic_dir(directory, force=True) as tmp:
            shutil.copytree(
                source, tmp, dirs_exist_ok=True, copy_function=_link_or_copy,
                ignore=shutil.ignore_patterns("transformer", "scheduler", "paro", "students", STUDENT_FILE),
            )  # fmt: skip
            _rebuild(net, stored_dtype(source / "transformer")).save_pretrained(
                str(tmp / "transformer"), safe_serialization=True
            )
            # Euler at the teacher's shift: the sampler the student was trained for (Wan ships UniPC)
            scheduler = FlowMatchEulerDiscreteScheduler.from_config(
                self.pipe.scheduler.config, shift=self.shift, use_dynamic_shifting=False
            )
            scheduler.save_pretrained(str(tmp / "scheduler"))
            index = json.loads((tmp / "model_index.json").read_text(encoding="utf-8"))
            index["scheduler"] = ["diffusers", "FlowMatchEulerDiscreteScheduler"]
            (tmp / "model_index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
            (tmp / STUDENT_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


class ImageDistillTarget(DiffusersDistillTarget):
    """SD3 and Flux: their VAE decodes latents for pixel-space terms (rewards)."""

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        z = x / vae.config.scaling_factor + (vae.config.shift_factor or 0.0)
        return vae.decode(z.to(vae.dtype), return_dict=False)[0].float()


def _rebuild(net: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A new module of `net`'s class and config holding copies of its weights in `dtype`."""
    with torch.device("meta"):
        fresh = type(net).from_config(net.config)
    state = {k: v.detach().to(dtype=dtype, copy=True) for k, v in net.state_dict().items()}
    fresh.load_state_dict(state, assign=True)
    for name, buffer in net.named_buffers():  # non-persistent buffers (Wan's rotary tables)
        if name not in state:
            owner, _, leaf = name.rpartition(".")
            fresh.get_submodule(owner).register_buffer(leaf, buffer.clone(), persistent=False)
    return fresh


def stored_dtype(folder: Path) -> torch.dtype:
    """The dtype of the first floating tensor in a model folder's safetensors (students keep it)."""
    for path in sorted(folder.glob("*.safetensors")):
        for _, _, dtype in list_tensors(path):
            if dtype in ("float32", "float16", "bfloat16"):
                return getattr(torch, dtype)  # type: ignore[no-any-return]
    return torch.float32


def _link_or_copy(src: str, dst: str) -> str:
    """Hard-link the teacher's unchanged files (text encoders are gigabytes); copy across file systems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def load_student(pipeline: DiffusersPipeline, directory: Path) -> dict[str, Any]:
    """`--accel METHOD:path=DIR`: swap in the student's transformer, its Euler scheduler and its grid."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from seed_diffusers.pipeline import _dtype_key, read_json

    info_file = directory / STUDENT_FILE
    if not info_file.is_file():
        raise ConfigError(f"{directory}: no {STUDENT_FILE}; not a student made by `seed distill`")
    info = read_json(info_file)
    if info.get("family") != pipeline.family.short:
        raise ConfigError(
            f"{directory}: a {info.get('family')} student cannot run in a {pipeline.family.pipeline}"
        )
    old = pipeline.pipe.transformer
    try:
        student = type(old).from_pretrained(
            str(directory / "transformer"), local_files_only=True, **{_dtype_key(): old.dtype}
        )
    except Exception as exc:  # corrupt or mismatched files
        raise ConfigError(
            f"{directory}: cannot load the student's transformer ({type(exc).__name__})"
        ) from None
    pipeline.use_student_info(info, info_file)  # checks the record before anything is swapped
    pipeline.pipe.transformer = student.to(pipeline.device).eval()
    route(pipeline.pipe.transformer, pipeline.family)
    pipeline.pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(
        pipeline.pipe.scheduler.config, shift=float(info.get("shift", 1.0)), use_dynamic_shifting=False
    )
    return dict(info)
