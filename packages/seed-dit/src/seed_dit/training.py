"""Training API for Seedream-style models: the flow-matching loss with logit-normal timesteps and the
resolution shift (Seedream 3.0), an optional REPA term, and an EMA of the weights.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seed_core.samplers import shift_timesteps


def logit_normal_timesteps(
    n: int,
    *,
    mean: float = 0.0,
    std: float = 1.0,
    shift: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """(n,) training times: sigmoid of a normal (SD3 / Seedream), then the resolution shift."""
    u = torch.randn(n, generator=generator) * std + mean
    return shift_timesteps(torch.sigmoid(u), shift).to(device)


@dataclass
class FlowMatchingBatch:
    x_t: torch.Tensor  # (B, C, H, W) noisy latents
    t: torch.Tensor  # (B,)
    target: torch.Tensor  # (B, C, H, W) velocity noise - x0


def make_flow_batch(
    x0: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> FlowMatchingBatch:
    """x_t = (1 - t) x0 + t noise and its velocity target."""
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    tt = t.view(-1, *([1] * (x0.ndim - 1))).to(x0.dtype)
    return FlowMatchingBatch((1 - tt) * x0 + tt * noise, t, noise - x0)


def flow_matching_loss(prediction: torch.Tensor, batch: FlowMatchingBatch) -> torch.Tensor:
    """Mean squared error of the predicted velocity."""
    return F.mse_loss(prediction.float(), batch.target.float())


class REPAProjector(nn.Module):
    """Representation alignment (REPA, used by Seedream 3.0): an MLP maps the DiT's image-token hidden states
    to the feature space of any frozen extractor; the loss is 1 - cosine similarity, averaged over tokens.

    The extractor's features must be on the same token grid as the DiT's image tokens: (B, N, feature_dim).
    """

    def __init__(self, hidden: int, feature_dim: int, width: int = 512) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, width), nn.SiLU(), nn.Linear(width, feature_dim))

    def loss(self, hidden: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        if hidden.shape[:2] != features.shape[:2]:
            raise ValueError(
                f"REPA features {tuple(features.shape)} are not on the DiT's token grid "
                f"{tuple(hidden.shape[:2])}"
            )
        return 1 - F.cosine_similarity(self.net(hidden).float(), features.float(), dim=-1).mean()


FeatureExtractor = Callable[[torch.Tensor], torch.Tensor]


class EMA:
    """Exponential moving average of a model's floating-point parameters and buffers.

    The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates, so early averages are not
    dominated by the random initial weights. Set `updates` when resuming.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, updates: int = 0) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay, self.updates = decay, updates
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        averaged: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        for ema, live in zip(self.shadow.state_dict().values(), model.state_dict().values(), strict=True):
            if ema.is_floating_point():
                averaged[0].append(ema)
                averaged[1].append(live.detach().to(ema.dtype))
            else:
                ema.copy_(live)
        if averaged[0]:  # one fused call: on a GPU, a launch per tensor would cost more than the math
            torch._foreach_lerp_(averaged[0], averaged[1], 1 - decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.shadow.load_state_dict(state)
