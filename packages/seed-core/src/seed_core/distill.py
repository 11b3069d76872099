"""The distillation protocol: what a backbone offers so that any distillation method can train a student
of it without knowing the backbone (seed-distill talks to this, never to seed-dit or seed-video).

Convention (seed_core.samplers): ``x_t = (1 - t) x0 + t noise``; a network predicts the velocity
``v = noise - x0``; so ``x0 = x_t - t v``. Methods hold three copies of the backbone's network (the frozen
teacher, the student, a "fake score" fitted to the student's samples) and call them through the target,
which knows how to condition them.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn


def batched_cfg(
    call: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    t: torch.Tensor,
    guidance: float | torch.Tensor,
) -> torch.Tensor:
    """Classifier-free guidance in one network call on ``[x; x]``: `call(x2, t2)` must condition the first
    half and not the second. `guidance` is a scale or one per sample (B,)."""
    c, u = call(torch.cat((x, x)), torch.cat((t, t))).chunk(2)
    scale = guidance.view(-1, *[1] * (x.ndim - 1)) if isinstance(guidance, torch.Tensor) else guidance
    return u + scale * (c - u)


class DistillTarget(abc.ABC):
    """A backbone prepared for distillation. Subclasses live beside their backbone.

    `teacher` is the backbone's denoising network (frozen by the methods). Conditions are opaque to the
    methods: they come from `sample_conditions` and go back into `velocity` / `features` unchanged.
    """

    teacher: nn.Module
    #: the guidance scale the teacher is sampled with (the real score of DMD-style methods)
    default_guidance: float = 1.0
    #: the text guidance of the teacher's edits, where it differs from `default_guidance` (None: the same)
    default_edit_guidance: float | None = None
    #: timestep shift of the teacher's sampler; student step grids use the same
    shift: float = 1.0
    #: noise levels [low, high] at which the teacher's sampler guides; outside, it runs the conditional
    #: branch alone (seed_dit's `PipelineConfig.guidance_interval`)
    guidance_interval: tuple[float, float] = (0.0, 1.0)

    @abc.abstractmethod
    def sample_conditions(self, n: int, generator: torch.Generator) -> Any:
        """A batch of `n` training conditions (prompts encoded), drawn with `generator`."""

    @abc.abstractmethod
    def sample_noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, ...) standard normal latents at the training size, on the target's device."""

    @abc.abstractmethod
    def velocity(
        self,
        net: nn.Module,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: Any,
        guidance: float | torch.Tensor = 1.0,
    ) -> torch.Tensor:
        """Velocity of `net` at (x, t (B,)). `guidance` > 1 runs classifier-free guidance with the null
        condition, unless `net` embeds the guidance scale (a guidance-distilled student): then it is
        passed to the network and one call is made."""

    def conditional_velocity(
        self, net: nn.Module, x: torch.Tensor, t: torch.Tensor, cond: Any
    ) -> torch.Tensor:
        """Velocity of `net` under the full condition alone, no guidance of any kind (for an edit: no image
        guidance either). Backbones whose `velocity` at guidance 1 still guides override it."""
        return self.velocity(net, x, t, cond, 1.0)

    def is_edit(self, cond: Any) -> bool:
        """Whether these conditions are instruction edits (targets with `edit_conditions` say)."""
        return False

    def default_scale(self, edit: bool = False) -> float:
        """The scale the teacher's sampler uses: an edit's own where it has one, else text-to-image's."""
        if edit and self.default_edit_guidance is not None:
            return self.default_edit_guidance
        return self.default_guidance

    def default_guidance_for(self, cond: Any) -> float:
        """`default_scale` for these conditions' task."""
        return self.default_scale(self.is_edit(cond))

    def teacher_velocity(
        self, x: torch.Tensor, t: torch.Tensor, cond: Any, guidance: float | torch.Tensor
    ) -> torch.Tensor:
        """The teacher as its sampler runs it: guided at `guidance` where t lies in `guidance_interval`,
        the conditional branch alone elsewhere (per sample: t is (B,))."""
        low, high = self.guidance_interval
        if (low, high) == (0.0, 1.0):  # no host read of t (a GPU sync) for teachers guided everywhere
            return self.velocity(self.teacher, x, t, cond, guidance)
        inside = (t >= low) & (t <= high)
        if bool(inside.all()):
            return self.velocity(self.teacher, x, t, cond, guidance)
        if not bool(inside.any()):
            return self.conditional_velocity(self.teacher, x, t, cond)
        rows, others = inside.nonzero().squeeze(1), (~inside).nonzero().squeeze(1)
        try:  # each row runs its own branches only: what the sampler spends
            conds = self.select_conditions(cond, rows), self.select_conditions(cond, others)
        except NotImplementedError:  # every branch on every row, then the right one kept
            alone = self.conditional_velocity(self.teacher, x, t, cond)
            guided = self.velocity(self.teacher, x, t, cond, guidance)
            return torch.where(inside.view(-1, *[1] * (x.ndim - 1)), guided, alone)
        scale = guidance[rows] if isinstance(guidance, torch.Tensor) and guidance.ndim else guidance
        guided = self.velocity(self.teacher, x[rows], t[rows], conds[0], scale)
        alone = self.conditional_velocity(self.teacher, x[others], t[others], conds[1])
        out = guided.new_empty((x.shape[0], *guided.shape[1:]))
        out[rows], out[others] = guided, alone.to(out.dtype)
        return out

    @abc.abstractmethod
    def features(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor, cond: Any) -> list[torch.Tensor]:
        """Hidden states of `net` at a few depths, each (B, N, D): the inputs of discriminator heads."""

    @abc.abstractmethod
    def feature_dims(self) -> list[int]:
        """The last dimension of each tensor `features` returns."""

    @abc.abstractmethod
    def make_student(self, guidance_embed: bool = False) -> nn.Module:
        """A trainable copy of the teacher's network (with a guidance-scale embedding when asked, its new
        layers initialised so that the student starts as the teacher)."""

    @abc.abstractmethod
    def save_student(self, net: nn.Module, directory: Path, info: dict[str, Any]) -> None:
        """Write the student where the backbone can load it: `info` (steps, timesteps, guidance, recipe)
        is stored beside the weights."""

    def load_student(self, directory: Path) -> nn.Module:
        """A student written by `save_student`, as a trainable network (`seed distill --init`: a stage
        continues from an earlier student). Optional; a mismatch with the teacher raises ConfigError."""
        raise NotImplementedError(f"{type(self).__name__} cannot load a student to continue from")

    def embeds_guidance(self, net: nn.Module) -> bool:
        """Whether `net` takes the guidance scale as an input (made by `make_student(True)`)."""
        return False

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents -> pixels in [-1, 1] (pixel-space discriminators and rewards). Optional."""
        raise NotImplementedError(f"{type(self).__name__} does not decode latents")

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels (B, 3, H, W) in [-1, 1] at the training size -> latents: real data for adversarial
        post-training. Optional."""
        raise NotImplementedError(f"{type(self).__name__} does not encode images")

    def conditions(self, prompts: Sequence[str]) -> Any:
        """The conditions of these prompts (the captions of real data), as `sample_conditions` makes
        them. Optional."""
        raise NotImplementedError(f"{type(self).__name__} does not take given prompts")

    def prompts(self, cond: Any) -> list[str]:
        """The prompts behind a batch of conditions (reward models read them). Optional."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its prompts")

    def edit_conditions(self, sources: torch.Tensor, instructions: Sequence[str]) -> Any:
        """Conditions of instruction edits of `sources` (latents from `encode`, one per instruction):
        `velocity` then guides them as the backbone's edit sampler does (`guidance` is the text scale),
        so a student trained on them keeps editing. Optional."""
        raise NotImplementedError(f"{type(self).__name__} does not take edits")

    def select_conditions(self, cond: Any, rows: torch.Tensor) -> Any:
        """The conditions of the batch rows `rows` (1-D long), in that order, so that `teacher_velocity` in
        a batch that straddles the guidance interval runs each row's own branches only. Optional: without
        it such a batch runs the guided and the unguided teacher on every row."""
        raise NotImplementedError(f"{type(self).__name__} does not select conditions")

    def repeat_conditions(self, cond: Any, k: int) -> Any:
        """The batch tiled `k` times: row i * n + j is condition j. This default re-encodes the prompts,
        so a target with `edit_conditions` overrides it (an edit is more than its instruction)."""
        return self.conditions(self.prompts(cond) * k)

    @property
    def device(self) -> torch.device:
        return next(self.teacher.parameters()).device
