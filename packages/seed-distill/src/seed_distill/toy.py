"""A 2-D toy backbone for the methods' tests and `benchmarks/distill_toy.py`: Gaussian mixtures (an
8-mode ring and a 25-mode grid, unequal weights), a small MLP flow-matching teacher conditioned on a class
(a group of modes; class 0 is the null condition for CFG), and the distillation protocol on top.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seed_core.distill import DistillTarget
from seed_core.samplers import cfg
from seed_distill.data import RealData


@dataclass(frozen=True)
class Mixture:
    centres: torch.Tensor  # (K, 2)
    weights: torch.Tensor  # (K,) sum 1
    sigma: float
    groups: int  # classes 1..groups; mode k belongs to class 1 + k % groups

    def label(self, mode: torch.Tensor) -> torch.Tensor:
        return 1 + mode % self.groups

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, 2) points and their (n,) class labels."""
        mode = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        x = self.centres[mode] + self.sigma * torch.randn(n, 2, generator=generator)
        return x, self.label(mode)

    def class_weights(self) -> torch.Tensor:
        """(groups,) probability of each class."""
        labels = self.label(torch.arange(len(self.weights)))
        return torch.zeros(self.groups).index_add_(0, labels - 1, self.weights)


def ring(modes: int = 8, radius: float = 2.0, sigma: float = 0.05, groups: int = 2) -> Mixture:
    angle = torch.arange(modes) * 2 * math.pi / modes
    raw = (
        torch.tensor([0.3, 0.2, 0.15, 0.1, 0.1, 0.05, 0.05, 0.05])[:modes]
        if modes == 8
        else torch.ones(modes)
    )
    return Mixture(torch.stack((angle.cos(), angle.sin()), 1) * radius, raw / raw.sum(), sigma, groups)


def grid(side: int = 5, spacing: float = 1.0, sigma: float = 0.05, groups: int = 5) -> Mixture:
    ax = (torch.arange(side) - (side - 1) / 2) * spacing
    centres = torch.cartesian_prod(ax, ax)
    raw = 1.0 + torch.arange(side * side) % 4  # unequal: 1, 2, 3, 4, 1, ...
    return Mixture(centres, raw / raw.sum(), sigma, groups)


def _fourier(t: torch.Tensor, dim: int = 16) -> torch.Tensor:
    freqs = torch.exp(torch.linspace(0, math.log(100.0), dim // 2, device=t.device))
    args = t[:, None] * freqs[None]
    return torch.cat((args.sin(), args.cos()), -1)


class ToyNet(nn.Module):
    """(x (B, 2), t (B,), class (B,)[, guidance (B,)]) -> velocity (B, 2); 3 hidden SiLU layers."""

    def __init__(self, classes: int, width: int = 128, guidance_embed: bool = False) -> None:
        super().__init__()
        self.width, self.classes = width, classes
        self.embed = nn.Embedding(classes + 1, 16)
        self.guidance = nn.Linear(16, width) if guidance_embed else None
        self.inp = nn.Linear(2 + 16 + 16, width)
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(2))
        self.out = nn.Linear(width, 2)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor, g: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = self.inp(torch.cat((x, _fourier(t), self.embed(c)), -1))
        if self.guidance is not None and g is not None:
            h = h + self.guidance(_fourier(g / 10))
        hidden = []
        h = F.silu(h)
        for layer in self.layers:
            h = F.silu(layer(h))
            hidden.append(h)
        return self.out(h), hidden


def train_teacher(
    mix: Mixture, steps: int = 3000, batch: int = 512, seed: int = 0, drop: float = 0.1
) -> ToyNet:
    """A flow-matching teacher on the mixture, with class dropout for CFG."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = ToyNet(mix.groups)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        x0, c = mix.sample(batch, gen)
        c = torch.where(torch.rand(batch, generator=gen) < drop, torch.zeros_like(c), c)
        noise = torch.randn(batch, 2, generator=gen)
        t = torch.rand(batch, generator=gen)
        x_t = (1 - t[:, None]) * x0 + t[:, None] * noise
        loss = F.mse_loss(net(x_t, t, c)[0], noise - x0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval().requires_grad_(False)


class ToyTarget(DistillTarget):
    """The distillation protocol on a toy teacher. Conditions are class labels drawn with the mixture's
    class weights; the null condition is class 0."""

    def __init__(self, teacher: ToyNet, mix: Mixture, guidance: float = 1.0) -> None:
        self.teacher, self.mix, self.default_guidance, self.shift = teacher, mix, guidance, 1.0
        self.net = teacher  # typed as a ToyNet
        self.students: list[dict[str, Any]] = []

    def sample_conditions(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return 1 + torch.multinomial(self.mix.class_weights(), n, replacement=True, generator=generator)

    def sample_noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, 2, generator=generator)

    def velocity(
        self,
        net: nn.Module,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: Any,
        guidance: float | torch.Tensor = 1.0,
    ) -> torch.Tensor:
        assert isinstance(net, ToyNet)
        if net.guidance is not None:
            g = torch.as_tensor(guidance, dtype=torch.float32).expand(x.shape[0])
            return net(x, t, cond, g)[0]
        if isinstance(guidance, torch.Tensor) or guidance != 1.0:
            c = net(x, t, cond)[0]
            u = net(x, t, torch.zeros_like(cond))[0]
            w = guidance.view(-1, 1) if isinstance(guidance, torch.Tensor) else guidance
            return cfg(c, u, w)  # type: ignore[arg-type,unused-ignore]  # a (B, 1) scale broadcasts
        return net(x, t, cond)[0]

    def features(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor, cond: Any) -> list[torch.Tensor]:
        assert isinstance(net, ToyNet)
        return [h[:, None] for h in net(x, t, cond)[1]]

    def feature_dims(self) -> list[int]:
        return [self.net.width] * len(self.net.layers)

    def embeds_guidance(self, net: nn.Module) -> bool:
        return isinstance(net, ToyNet) and net.guidance is not None

    def make_student(self, guidance_embed: bool = False) -> nn.Module:
        student = ToyNet(self.net.classes, self.net.width, guidance_embed)
        student.load_state_dict(self.teacher.state_dict(), strict=False)
        if student.guidance is not None:
            nn.init.zeros_(student.guidance.weight)
            nn.init.zeros_(student.guidance.bias)
        return student.requires_grad_(True).train()

    # real data (apt): a 2-D point is its own "latent"; a caption is the class label as text
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels

    def conditions(self, prompts: Sequence[str]) -> torch.Tensor:
        return torch.tensor([int(p) for p in prompts])

    def prompts(self, cond: Any) -> list[str]:
        return [str(int(c)) for c in cond]

    def real_data(self, n: int, seed: int = 0) -> RealData:
        x, labels = self.mix.sample(n, torch.Generator().manual_seed(seed))
        return RealData(x, [str(int(c)) for c in labels])

    def load_student(self, directory: Path) -> nn.Module:
        state = torch.load(directory / "student.pt", weights_only=False)["state"]
        student = ToyNet(self.net.classes, self.net.width, "guidance.weight" in state)
        student.load_state_dict(state)
        return student.requires_grad_(True).train()

    def save_student(self, net: nn.Module, directory: Path, info: dict[str, Any]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        torch.save({"state": net.state_dict(), "info": info}, directory / "student.pt")
        self.students.append({"net": copy.deepcopy(net).eval(), "info": info})


def sample_student(
    target: ToyTarget, net: nn.Module, n: int, steps: int, guidance: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 2) samples of a student (Euler on `steps` uniform steps) and their classes."""
    gen = torch.Generator().manual_seed(seed)
    cond = target.sample_conditions(n, gen)
    x = target.sample_noise(n, gen)
    ts = torch.linspace(1, 0, steps + 1)
    with torch.no_grad():
        for i in range(steps):
            t = ts[i].expand(n)
            x = x + (ts[i + 1] - ts[i]) * target.velocity(net, x, t, cond, guidance)
    return x, cond


# --- metrics ----------------------------------------------------------------------------------------


def mode_histogram(mix: Mixture, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Counts per mode of the samples within 3 sigma of a centre, and the mask of such samples."""
    d = torch.cdist(x, mix.centres)
    near, mode = d.min(1)
    good = near < 3 * mix.sigma
    return torch.bincount(mode[good], minlength=len(mix.weights)).float(), good


def mmd(x: torch.Tensor, y: torch.Tensor, bandwidths: tuple[float, ...] = (0.05, 0.2, 1.0)) -> float:
    """Biased MMD^2 with a sum of RBF kernels."""

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(a, b).pow(2)
        return sum(torch.exp(-d2 / (2 * s * s)) for s in bandwidths)  # type: ignore[return-value]

    return float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


def mode_metrics(mix: Mixture, x: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Modes covered (>= 10% of the expected count within 3 sigma), share of high-quality samples,
    total-variation distance of the mode histogram to the true weights, MMD^2 against `reference`; and
    the same coverage and TV with every sample given to its nearest centre (`*_nearest`), which still
    counts modes when the samples are off the data (CFG's overshoot, blur)."""
    counts, good = mode_histogram(mix, x)
    n = x.shape[0]
    expected = mix.weights * n
    hist = counts / counts.sum().clamp_min(1)
    nearest = torch.bincount(torch.cdist(x, mix.centres).argmin(1), minlength=len(mix.weights)).float()
    return {
        "modes": int((counts >= 0.1 * expected).sum()),
        "high_quality": float(good.float().mean()),
        "tv": float(0.5 * (hist - mix.weights).abs().sum()),
        "modes_nearest": int((nearest >= 0.1 * expected).sum()),
        "tv_nearest": float(0.5 * (nearest / n - mix.weights).abs().sum()),
        "mmd": mmd(x[:2000], reference[:2000]),
    }
