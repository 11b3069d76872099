"""Flow-matching samplers, timestep schedules and classifier-free guidance.

Convention (Seedream 3.0, SD3, Flux): ``x_t = (1 - t) * x0 + t * noise`` for t in [0, 1]; the model predicts
the velocity ``v = dx_t/dt = noise - x0``; sampling integrates the ODE from t = 1 (noise) to t = 0 (data).
The data prediction at any t is ``x0 = x_t - t * v``.

A sampler is any object with ``sample(velocity, x, timesteps, callback=None) -> x`` where
``velocity(x, t)`` takes x and t of shape (B,) and returns v shaped like x, and ``timesteps`` is a
decreasing 1-D tensor from 1 to 0 (see `flow_timesteps`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: called after every step with (step index, number of steps, t reached, x at t)
StepCallback = Callable[[int, int, float, torch.Tensor], None]


class Sampler(Protocol):
    order: int

    def sample(
        self,
        velocity: Velocity,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        callback: StepCallback | None = None,
    ) -> torch.Tensor: ...


# --- schedules -----------------------------------------------------------------------------------------


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    """SD3 / Seedream timestep shift ``t' = s t / (1 + (s - 1) t)``; s > 1 spends more steps at high noise."""
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    return shift * t / (1 + (shift - 1) * t)


def resolution_shift(
    num_tokens: int,
    *,
    base_tokens: int = 256,
    max_tokens: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    """Resolution-aware shift: larger images (more latent tokens) shift toward lower SNR.

    Seedream 3.0 computes the shift from the target resolution but publishes no formula; this is Flux's
    rule: ``log(shift)`` linear in the token count from ``base_shift`` at ``base_tokens`` to ``max_shift``
    at ``max_tokens`` (extrapolated beyond). 256 tokens -> 1.65, 4096 tokens -> 3.16.
    """
    if num_tokens <= 0:
        raise ValueError(f"num_tokens must be positive, got {num_tokens}")
    slope = (max_shift - base_shift) / (max_tokens - base_tokens)
    return math.exp(base_shift + slope * (num_tokens - base_tokens))


def flow_timesteps(
    steps: int, shift: float = 1.0, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """`steps + 1` times from 1 to 0: uniform, then shifted. Shape (steps + 1,)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return shift_timesteps(t, shift).to(device=device, dtype=dtype)


# --- guidance ------------------------------------------------------------------------------------------


def cfg(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: ``uncond + scale * (cond - uncond)`` (scale 1 = no guidance)."""
    return uncond + scale * (cond - uncond)


def dual_cfg(
    full: torch.Tensor,
    image_only: torch.Tensor,
    uncond: torch.Tensor,
    text_scale: float | torch.Tensor,
    image_scale: float | torch.Tensor,
) -> torch.Tensor:
    """Text + image guidance for editing (InstructPix2Pix form); a tensor scale broadcasts (one a row).

    ``full`` has both the instruction and the source image, ``image_only`` the source image and no text,
    ``uncond`` neither: ``uncond + image_scale (image_only - uncond) + text_scale (full - image_only)``.
    """
    return uncond + image_scale * (image_only - uncond) + text_scale * (full - image_only)


# --- solvers -------------------------------------------------------------------------------------------


def _t_batch(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A scalar time as a (B,) tensor on x's device. Keep x in float32: the velocity function casts for
    the model, so low-precision models do not accumulate the ODE in low precision."""
    return t.to(x.device, x.dtype).expand(x.shape[0])


class FlowMatchEuler:
    """First-order Euler: one model call per step."""

    order = 1

    def sample(
        self,
        velocity: Velocity,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        callback: StepCallback | None = None,
    ) -> torch.Tensor:
        n = len(timesteps) - 1
        for i in range(n):
            t, t_next = timesteps[i], timesteps[i + 1]
            x = x + (t_next - t).to(x.dtype) * velocity(x, _t_batch(t, x))
            if callback:
                callback(i, n, float(t_next), x)
        return x


class FlowMatchHeun:
    """Second-order Heun (explicit trapezoid): two model calls per step."""

    order = 2

    def sample(
        self,
        velocity: Velocity,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        callback: StepCallback | None = None,
    ) -> torch.Tensor:
        n = len(timesteps) - 1
        for i in range(n):
            t, t_next = timesteps[i], timesteps[i + 1]
            dt = (t_next - t).to(x.dtype)
            v = velocity(x, _t_batch(t, x))
            v_next = velocity(x + dt * v, _t_batch(t_next, x))
            x = x + dt * 0.5 * (v + v_next)
            if callback:
                callback(i, n, float(t_next), x)
        return x


class FlowMatchDPMSolver2M:
    """DPM-Solver++(2M) in data prediction, one model call per step.

    With alpha_t = 1 - t and sigma_t = t, lambda = log(alpha / sigma). A step is an exponential integrator
    on x0 = x - t v, second order by a linear extrapolation of x0 over lambda from the previous step; it
    falls back to first order (DDIM) where lambda is infinite (t = 1 or t = 0).
    """

    order = 2

    def sample(
        self,
        velocity: Velocity,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        callback: StepCallback | None = None,
    ) -> torch.Tensor:
        n = len(timesteps) - 1
        ts = [float(t) for t in timesteps]
        lam = [math.log((1 - t) / t) if 0 < t < 1 else None for t in ts]
        prev_x0: torch.Tensor | None = None
        for i in range(n):
            s, t = ts[i], ts[i + 1]
            x0 = x - s * velocity(x, _t_batch(timesteps[i], x))
            d = x0
            ls, lt = lam[i], lam[i + 1]
            lp = lam[i - 1] if i > 0 else None
            if prev_x0 is not None and ls is not None and lt is not None and lp is not None:
                r = (ls - lp) / (lt - ls)
                d = x0 + (x0 - prev_x0) / (2 * r)
            # x_t = (sigma_t / sigma_s) x_s + (alpha_t - alpha_s sigma_t / sigma_s) D, finite for sigma_s > 0
            x = (t / s) * x + ((1 - t) - (1 - s) * t / s) * d
            prev_x0 = x0
            if callback:
                callback(i, n, t, x)
        return x
