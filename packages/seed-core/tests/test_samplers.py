"""Samplers on a flow with a known solution: Gaussian data N(mu, s^2), whose probability-flow ODE is linear.

x_t = (1 - t) x0 + t eps has marginal N((1 - t) mu, sd_t^2) with sd_t^2 = (1 - t)^2 s^2 + t^2, and the ODE
maps x(1) = z to x(0) = mu + s z exactly, so the error of each solver can be measured against it.
"""

from __future__ import annotations

import math

import pytest
import torch

from seed_core.samplers import (
    FlowMatchDPMSolver2M,
    FlowMatchEuler,
    FlowMatchHeun,
    cfg,
    dual_cfg,
    flow_timesteps,
    resolution_shift,
    shift_timesteps,
)

MU, S = 0.7, 0.3


def gaussian_velocity(x: torch.Tensor, t: torch.Tensor, s: float = S) -> torch.Tensor:
    t = t.view(-1, *([1] * (x.ndim - 1)))
    sd = torch.sqrt((1 - t) ** 2 * s**2 + t**2)
    d_sd = ((t - 1) * s**2 + t) / sd
    return -MU + d_sd / sd * (x - (1 - t) * MU)


Z = torch.randn(4, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
EXACT = MU + S * Z


def _error(sampler, steps: int, shift: float = 1.0) -> float:
    out = sampler.sample(gaussian_velocity, Z.clone(), flow_timesteps(steps, shift, dtype=torch.float64))
    return (out - EXACT).abs().max().item()


def _order(sampler, n: int, shift: float = 1.0) -> float:
    return math.log2(_error(sampler, n, shift) / _error(sampler, 2 * n, shift))


def test_euler_is_first_order():
    assert 0.9 < _order(FlowMatchEuler(), 32) < 1.1
    assert 0.9 < _order(FlowMatchEuler(), 64, shift=3.0) < 1.1


def test_heun_is_second_order():
    assert 1.85 < _order(FlowMatchHeun(), 32) < 2.15
    assert 1.85 < _order(FlowMatchHeun(), 128, shift=3.0) < 2.15


def _exact_at(t: float) -> torch.Tensor:
    return (1 - t) * MU + math.sqrt((1 - t) ** 2 * S**2 + t**2) * Z


def _log_snr_grid(n: int, t_start: float = 0.95, t_end: float = 0.05) -> torch.Tensor:
    """n steps uniform in lambda = log((1 - t) / t): the grid DPM-Solver's analysis assumes."""
    lam = torch.linspace(
        math.log((1 - t_start) / t_start), math.log((1 - t_end) / t_end), n + 1, dtype=torch.float64
    )
    return 1 / (1 + lam.exp())


def test_dpm_solver_2m_is_second_order_in_log_snr():
    errors = []
    for n in (32, 64):
        ts = _log_snr_grid(n)
        out = FlowMatchDPMSolver2M().sample(gaussian_velocity, _exact_at(float(ts[0])), ts)
        errors.append((out - _exact_at(float(ts[-1]))).abs().max().item())
    assert 1.8 < math.log2(errors[0] / errors[1]) < 2.2


def test_dpm_solver_2m_converges_on_the_full_flow_grid():
    # On the uniform t grid from 1 to 0 its log-SNR steps do not shrink at the ends, so order 2 shows
    # only slowly; it must still converge, faster than first order.
    assert _order(FlowMatchDPMSolver2M(), 256) > 1.6
    assert _error(FlowMatchDPMSolver2M(), 512) < 2e-4


def test_dpm_solver_2m_is_exact_when_the_data_prediction_is_constant():
    # point-mass data (s = 0): x0 = x - t v is the same at every step, so DDIM and 2M are exact
    velocity = lambda x, t: gaussian_velocity(x, t, s=0.0)  # noqa: E731
    out = FlowMatchDPMSolver2M().sample(velocity, Z.clone(), flow_timesteps(5, dtype=torch.float64))
    torch.testing.assert_close(out, torch.full_like(Z, MU))


def test_callback_and_nfe():
    calls, seen = [], []

    def velocity(x, t):
        calls.append(float(t[0]))
        return gaussian_velocity(x, t)

    FlowMatchHeun().sample(
        velocity,
        Z.clone(),
        flow_timesteps(4, dtype=torch.float64),
        callback=lambda i, n, t, x: seen.append((i, n, t)),
    )
    assert len(calls) == 8
    assert seen == [(0, 4, 0.75), (1, 4, 0.5), (2, 4, 0.25), (3, 4, 0.0)]
    calls.clear()
    FlowMatchDPMSolver2M().sample(velocity, Z.clone(), flow_timesteps(4, dtype=torch.float64))
    assert len(calls) == 4


def test_shift_formula():
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(
        shift_timesteps(t, 3.0), torch.tensor([0.0, 0.5, 0.75, 1.0], dtype=torch.float64)
    )
    torch.testing.assert_close(shift_timesteps(t, 1.0), t)
    ts = flow_timesteps(10, shift=3.0)
    assert ts[0] == 1 and ts[-1] == 0 and bool((ts[:-1] > ts[1:]).all())
    with pytest.raises(ValueError):
        shift_timesteps(t, 0.0)
    with pytest.raises(ValueError):
        flow_timesteps(0)


def test_resolution_shift_grows_with_tokens():
    assert resolution_shift(256) == pytest.approx(math.exp(0.5))
    assert resolution_shift(4096) == pytest.approx(math.exp(1.15))
    assert resolution_shift(1024) < resolution_shift(4096) < resolution_shift(16384)


def test_cfg_combinations():
    cond, uncond, image_only = torch.tensor([3.0]), torch.tensor([1.0]), torch.tensor([2.0])
    assert cfg(cond, uncond, 1.0).item() == 3.0
    assert cfg(cond, uncond, 0.0).item() == 1.0
    assert cfg(cond, uncond, 4.0).item() == 1.0 + 4.0 * 2.0
    # 1 + 1.5 * (2 - 1) + 5 * (3 - 2)
    assert dual_cfg(cond, image_only, uncond, text_scale=5.0, image_scale=1.5).item() == 7.5
    # scales of 1 give the fully conditioned prediction
    assert dual_cfg(cond, image_only, uncond, 1.0, 1.0).item() == 3.0
