"""Distillation methods. Each turns a step of training into a few phases (an optimizer and a loss);
the trainer runs the phases, shards the batch over ranks and micro-batches, and checkpoints.

A method sees the backbone only through `seed_core.distill.DistillTarget`. The student is a velocity
network like the teacher, sampled with Euler on `flow_timesteps(steps, shift)`: its generator output at
step k is its data prediction x0 = x_k - t_k v(x_k, t_k) (backward simulation, DMD2 / DMDO).

Choices where the papers leave gaps (see the package README): ADM's estimators step dt = 0.5 of the ODE
(clipped at t = 0), the generator's gradient flows through x_t and the fake score's input (its weights
frozen for that pass); ADP's discriminator is hybrid (latent heads 0.85 + a pixel patch discriminator 0.15,
latent-only where the target cannot decode); TSCD jumps to the lower edge of the segment; APT's feature
matching compares batch means of the teacher's features (real and generated samples are not paired).

Any generator loss can carry a reward term (ReFL): `reward_weight * relu(margin - r(decode(x0), prompt))`
with a registered reward model (`seed distill --reward NAME`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from seed_core.distill import DistillTarget
from seed_core.errors import UsageError
from seed_core.samplers import flow_timesteps
from seed_distill import losses as L

Shard = Callable[[nn.Module], nn.Module] | None


def _full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor of an FSDP2 shard (a collective: every rank calls it), else the tensor."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def full_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """`module.state_dict()` with FSDP2 shards gathered (a collective under FSDP2)."""
    return {k: _full(v) for k, v in module.state_dict().items()}


@dataclass
class Options:
    """Flat options shared by the methods (each reads the ones it needs)."""

    steps: int = 4  # student sampling steps (TSCD: segments)
    guidance: float | None = None  # the real score's CFG scale; None: the teacher's default
    lr: float = 1e-5  # generator
    fake_lr: float | None = None  # fake score and discriminator; None: lr
    ratio: int = 5  # TTUR: fake / discriminator updates per generator update
    critic_warmup: int = 0  # steps at a stage's start that train the critics only (adm, dmd2, apt)
    dt: float = 0.5  # ADM: the estimators step the ODE from t to max(t - dt, 0) (0.1 collapsed on the toy)
    teacher_steps: int = 8  # ODE steps for teacher samples (ADP pairs, CFG / TSCD data)
    max_guidance: float = 6.0  # CFG distillation draws the scale from U[1, max_guidance]
    # TSCD: "teacher" (land where the teacher's ODE lands) or "ema" (one teacher step, then the EMA student:
    # Hyper-SD's consistency form); on seedream-mini "teacher" measured better at equal cost (RESULTS.md)
    tscd_target: str = "teacher"
    # TSCD with the teacher's target: where the jumps start, "any" (a random teacher step of the segment),
    # "starts" (every segment's start of each teacher trajectory) or "own" (every segment's start of the
    # student's own sampling chain, the teacher's ODE from there the target: no exposure bias)
    tscd_points: str = "any"
    r1: float = 0.0  # approximate R1 weight on the discriminator (0: off)
    r1_sigma: float = 0.05
    # ADP, DMD2: weight of a regression of the student's x0 onto the teacher's ODE sample from the same noise
    # (DMD's regression loss, which DMD2 dropped; 0 = none)
    mse: float = 0.0
    pixel: float = 0.15  # ADP: weight of the pixel discriminator (DMDX: 0.15; the latent one gets 1 - pixel)
    r2: float = 0.0  # approximate R2 weight (APT: on generated samples)
    fm: float = 1.0  # APT: weight of the feature-matching term of the generator
    gan: float = 3e-3  # DMD2 with real data: weight of the GAN term of the generator (DMD2: 1e-3 - 5e-3)
    gan_critic: float = 1e-2  # DMD2 with real data: weight of the classifier loss in the fake score's phase
    reward_weight: float = 0.0  # ReFL term on generator losses (needs a reward model in extra["reward"])
    reward_margin: float | None = None  # None: the reward model's own margin
    # share of micro-batches that are instruction edits of extra["edits"] (sources + instructions, from
    # `--edits DIR`) instead of the text-to-image prompts: the student keeps editing (RESULTS, session 15)
    edit_share: float = 0.0
    # not saved with the student: the reward model ("reward"), real data ("data"), edit sources ("edits")
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def critic_lr(self) -> float:
        return self.fake_lr if self.fake_lr is not None else self.lr


@dataclass
class Phase:
    """One optimizer update: `loss(generator)` is evaluated per micro-batch, gradients summed."""

    name: str
    optimizer: torch.optim.Optimizer | _Joint
    params: list[nn.Parameter]
    loss: Callable[[torch.Generator, int], torch.Tensor]  # (generator, micro-batch size) -> loss


# beta1 = 0 for the adversarial games (DMD2's and GAN practice: momentum lags a moving opponent)
GAME_BETAS = (0.0, 0.99)


def _adam(
    params: list[nn.Parameter], lr: float, betas: tuple[float, float] = GAME_BETAS
) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=0.01)


class Method:
    """Base: holds the target, the student and the options; subclasses add networks and phases."""

    name = ""
    #: the student needs a guidance-scale embedding (CFG distillation)
    guidance_embed = False
    #: the student's AdamW betas
    betas: tuple[float, float] = GAME_BETAS

    def __init__(
        self, target: DistillTarget, student: nn.Module, options: Options, shard: Shard = None
    ) -> None:
        if options.steps < 1:
            raise UsageError(f"--steps of the student must be >= 1, got {options.steps}")
        self.target, self.student, self.o = target, student, options
        # the trainer's FSDP2 wrapper (identity without it): new trainable networks pass through it before
        # their optimizer is built
        self.shard: Callable[[nn.Module], nn.Module] = shard or (lambda m: m)
        self.sharded = shard is not None
        self.w = options.guidance if options.guidance is not None else target.default_guidance
        self.grid = flow_timesteps(options.steps, target.shift, device=target.device)
        self.g_opt = _adam(self.trainable(student), options.lr, self.betas)
        # values logged beside the losses (the trainer reads and clears them every step)
        self.stats: dict[str, float] = {}
        self.stage_step = 0  # steps of this stage before the current one (set by the trainer)

    @staticmethod
    def trainable(module: nn.Module) -> list[nn.Parameter]:
        return [p for p in module.parameters() if p.requires_grad]

    # what the trainer checkpoints besides the student
    def modules(self) -> dict[str, nn.Module]:
        return {}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.g_opt}

    def phases(self, step: int) -> list[Phase]:
        raise NotImplementedError

    def after_step(self) -> None:
        """Called once a step, after every phase (TSCD moves its EMA target here)."""

    def generator_turn(self, step: int) -> bool:
        """TTUR: the generator updates every `ratio` steps, once the critics have had `critic_warmup`
        steps of this stage to themselves (a generator led by untrained heads only drifts)."""
        return step % self.o.ratio == 0 and self.stage_step >= self.o.critic_warmup

    # --- shared pieces ------------------------------------------------------------------------------

    def student_velocity(self, x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        """The student as sampled: its embedded guidance is the teacher's scale (CFG baked in)."""
        return self.target.velocity(self.student, x, t, cond, self.student_guidance(cond))

    def scale(self, edit: bool = False) -> float:
        """The teacher's scale: `--guidance`, else its sampler's for the task (an edit's may differ from
        text-to-image's, which is `w`)."""
        return self.w if self.o.guidance is not None else self.target.default_scale(edit)

    def guidance_for(self, cond: Any) -> float:
        return self.scale(self.target.is_edit(cond))

    def student_guidance(self, cond: Any) -> float:
        return self.guidance_for(cond) if self.target.embeds_guidance(self.student) else 1.0

    def teacher_velocity(self, x: torch.Tensor, t: torch.Tensor, cond: Any, w: Any = None) -> torch.Tensor:
        with torch.no_grad():
            return self.target.teacher_velocity(x, t, cond, self.guidance_for(cond) if w is None else w)

    def generate(
        self, gen: torch.Generator, n: int, grad: bool, cond: Any = None, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Any]:
        """Backward simulation: run the student k ~ U{0..steps-1} steps without gradient, then predict
        x0 from there (with gradient when `grad`). Returns (x0, conditions); `cond` and the starting
        `noise` (else drawn)."""
        cond = self.sample_conditions(gen, n) if cond is None else cond
        x = self.target.sample_noise(n, gen) if noise is None else noise
        k = int(torch.randint(0, len(self.grid) - 1, (), generator=gen))
        with torch.no_grad():
            for i in range(k):
                t, s = self.grid[i].expand(n), self.grid[i + 1].expand(n)
                x = L.euler_jump(x, t, self.student_velocity(x, t, cond), s)
        t = self.grid[k].expand(n)
        with torch.set_grad_enabled(grad):
            return L.to_x0(x, t, self.student_velocity(x, t, cond)), cond

    def teacher_sample(
        self, gen: torch.Generator, n: int, w: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """(noise, x0, cond) from the teacher's Euler ODE at `teacher_steps` with CFG: ODE pairs, drawn
        from the bank of `--pairs` (extra["pairs"]) when there is one and the guidance is the teacher's."""
        bank = self.o.extra.get("pairs")
        if bank is not None and w is None:
            noise, x0, prompts = bank.batch(n, gen)
            return noise, x0, self.target.conditions(prompts)
        states, cond = self.teacher_trajectory(gen, n, w)
        return states[0], states[-1], cond

    def teacher_trajectory(self, gen: torch.Generator, n: int, w: Any = None) -> tuple[torch.Tensor, Any]:
        """Every state of the teacher's Euler ODE at `teacher_steps` with CFG, (teacher_steps + 1, n, ...)
        from the noise to x0 on `flow_timesteps(teacher_steps, shift)`, and the conditions."""
        cond = self.sample_conditions(gen, n)
        x = self.target.sample_noise(n, gen)
        grid = flow_timesteps(self.o.teacher_steps, self.target.shift, device=x.device)
        return torch.stack([x, *self.teacher_ode(x, cond, grid, 0, self.o.teacher_steps, w)]), cond

    def teacher_ode(
        self, x: torch.Tensor, cond: Any, grid: torch.Tensor, start: int, end: int, w: Any = None
    ) -> list[torch.Tensor]:
        """The teacher's Euler states with CFG from x at grid[start] to grid[end], one a step."""
        states = []
        for i in range(start, end):
            t, s = grid[i].expand(x.shape[0]), grid[i + 1].expand(x.shape[0])
            x = L.euler_jump(x, t, self.teacher_velocity(x, t, cond, w), s)
            states.append(x)
        return states

    def sample_conditions(self, gen: torch.Generator, n: int) -> Any:
        """A micro-batch of training conditions: edits of the `--edits` sources with probability
        `edit_share` (a whole micro-batch: edits and prompts differ in their inputs), else prompts. Without
        edits nothing extra is drawn from `gen`, so runs without them are unchanged."""
        edits = self.o.extra.get("edits")
        if edits is not None and self.o.edit_share > 0:
            if float(torch.rand((), generator=gen)) < self.o.edit_share:
                return self.target.edit_conditions(*edits.batch(n, gen))
        return self.target.sample_conditions(n, gen)

    def noise_like(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return torch.randn(x.shape, generator=gen).to(x.device)

    def reward_term(self, x0: torch.Tensor, cond: Any) -> torch.Tensor:
        """The ReFL term on generated x0 (0 without a reward model or weight); its gradient reaches the
        student through the decoder and the reward model."""
        model = self.o.extra.get("reward")
        if model is None or self.o.reward_weight <= 0:
            return x0.new_zeros(())
        reward = model(self.target.decode(x0), self.target.prompts(cond))
        self.stats["reward"] = float(reward.detach().mean())
        margin = self.o.reward_margin if self.o.reward_margin is not None else float(model.margin)
        return self.o.reward_weight * L.refl_hinge(reward, margin)


class _FakeScore(Method):
    """Methods with a fake score fitted to the student's samples (DMD2, ADM)."""

    def __init__(
        self, target: DistillTarget, student: nn.Module, options: Options, shard: Shard = None
    ) -> None:
        super().__init__(target, student, options, shard)
        self.fake = self.shard(copy.deepcopy(target.teacher).float().requires_grad_(True).train())
        self.fake_opt = _adam(list(self.fake.parameters()), options.critic_lr)

    def modules(self) -> dict[str, nn.Module]:
        return {**super().modules(), "fake": self.fake}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {**super().optimizers(), "fake": self.fake_opt}

    def fake_velocity(self, x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        return self.target.velocity(self.fake, x, t, cond)

    def fake_loss(self, gen: torch.Generator, n: int) -> torch.Tensor:
        x0, cond = self.generate(gen, n, grad=False)
        noise = self.noise_like(x0, gen)
        t = L.uniform_t(n, gen, 0.0, 1.0, self.target.shift).to(x0.device)
        return L.flow_loss(self.fake_velocity(L.noised(x0, noise, t), t, cond), x0, noise)

    def fake_phase(self) -> Phase:
        return Phase("fake", self.fake_opt, list(self.fake.parameters()), self.fake_loss)


class _Discriminated(Method):
    """Methods with a discriminator: trainable heads on the frozen teacher's features."""

    def __init__(
        self, target: DistillTarget, student: nn.Module, options: Options, shard: Shard = None
    ) -> None:
        super().__init__(target, student, options, shard)
        self.disc = self.shard(L.Discriminator(target.feature_dims()).to(target.device))
        self.d_opt = _adam(list(self.disc.parameters()), options.critic_lr)

    def modules(self) -> dict[str, nn.Module]:
        return {**super().modules(), "disc": self.disc}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {**super().optimizers(), "disc": self.d_opt}


class DMD2(_FakeScore):
    """Distribution matching (reverse KL) with a learned fake score, TTUR and backward simulation. With
    real data (`extra["data"]`), DMD2's GAN term: heads on the fake score's features classify real latents
    against generated ones, both noised to the same t ("diffusion GAN"); the heads train with the fake
    score (weight `gan_critic`) and the generator gets a non-saturating term (weight `gan`). With `mse`,
    DMD's (v1) regression loss: the generator's samples start from the noise of teacher ODE pairs (the
    `--pairs` bank's when there is one) and are also pulled onto the teacher's sample, weight `mse`."""

    name = "dmd2"

    def __init__(
        self, target: DistillTarget, student: nn.Module, options: Options, shard: Shard = None
    ) -> None:
        super().__init__(target, student, options, shard)
        self.data = options.extra.get("data") if options.gan > 0 else None
        self.heads: nn.Module | None = None
        if self.data is not None:
            self.heads = self.shard(L.Discriminator(target.feature_dims()).to(target.device))
            self.h_opt = _adam(list(self.heads.parameters()), options.critic_lr)

    def modules(self) -> dict[str, nn.Module]:
        return {**super().modules(), **({"heads": self.heads} if self.heads is not None else {})}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {**super().optimizers(), **({"heads": self.h_opt} if self.heads is not None else {})}

    def _classify(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, cond: Any) -> torch.Tensor:
        assert self.heads is not None
        return self.heads(self.target.features(self.fake, L.noised(x0, noise, t), t, cond))

    def generator_loss(self, gen: torch.Generator, n: int) -> torch.Tensor:
        noise = x_teacher = cond = None
        if self.o.mse:  # DMD's form: the generator starts from the noise of teacher ODE pairs (a bank's)
            noise, x_teacher, cond = self.teacher_sample(gen, n)
        x0, cond = self.generate(gen, n, True, cond, noise)
        t = L.uniform_t(n, gen, shift=self.target.shift).to(x0.device)
        x_t = L.noised(x0.detach(), self.noise_like(x0, gen), t)
        with torch.no_grad():
            real = L.to_x0(x_t, t, self.teacher_velocity(x_t, t, cond))
            fake = L.to_x0(x_t, t, self.fake_velocity(x_t, t, cond))
        loss = L.dmd_loss(x0, real, fake) + self.reward_term(x0, cond)
        if x_teacher is not None:
            regression = torch.nn.functional.mse_loss(x0, x_teacher.to(x0.device))
            self.stats["mse"] = float(regression.detach())  # logged apart: the sum hides which term moves
            loss = loss + self.o.mse * regression
        if self.heads is not None:
            self.fake.requires_grad_(self.sharded)  # the gradient goes to x0 only (see ADM)
            try:
                logits = self._classify(x0, t, self.noise_like(x0, gen), cond)
            finally:
                self.fake.requires_grad_(True)
            loss = loss + self.o.gan * L.ns_g(logits)
        return loss

    def fake_loss(self, gen: torch.Generator, n: int) -> torch.Tensor:
        loss = super().fake_loss(gen, n)
        if self.heads is None:
            return loss
        real, captions = self.data.batch(n, gen)
        cond = self.target.conditions(captions)
        with torch.no_grad():
            x0, _ = self.generate(gen, n, grad=False, cond=cond)
        t = L.uniform_t(n, gen, 0.0, 1.0).to(x0.device)
        noise = self.noise_like(x0, gen)
        d_real = self._classify(real.to(x0.device), t, noise, cond)
        return loss + self.o.gan_critic * L.ns_d(d_real, self._classify(x0, t, noise, cond))

    def fake_phase(self) -> Phase:
        if self.heads is None:
            return super().fake_phase()
        params = list(self.fake.parameters()) + list(self.heads.parameters())
        return Phase("fake", _Joint(self.fake_opt, self.h_opt), params, self.fake_loss)

    def phases(self, step: int) -> list[Phase]:
        g = [Phase("generator", self.g_opt, self.trainable(self.student), self.generator_loss)]
        return (g if self.generator_turn(step) else []) + [self.fake_phase()]


class ADM(_FakeScore, _Discriminated):
    """Adversarial distribution matching: a discriminator (frozen teacher features + heads) tells the
    teacher's one-step ODE output from the fake score's, at t - dt; hinge loss."""

    name = "adm"

    def logits(self, x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        return self.disc(self.target.features(self.target.teacher, x, t, cond))

    def _steps(
        self, x0: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = x0.shape[0]
        t = L.uniform_t(n, gen, shift=self.target.shift).to(x0.device)
        return L.noised(x0, self.noise_like(x0, gen), t), t, (t - self.o.dt).clamp_min(0.0)

    def generator_loss(self, gen: torch.Generator, n: int) -> torch.Tensor:
        x0, cond = self.generate(gen, n, grad=True)
        x_t, t, s = self._steps(x0, gen)
        # the gradient goes through the fake score's input only; under FSDP2 its weights keep requires_grad
        # (a sharded module with none detaches its output) and their stray gradients are cleared by the
        # fake phase's zero_grad
        frozen = not self.sharded
        self.fake.requires_grad_(not frozen)
        try:
            x_fake = L.euler_jump(x_t, t, self.fake_velocity(x_t, t, cond), s)
        finally:
            self.fake.requires_grad_(True)
        return L.hinge_g(self.logits(x_fake, s, cond)) + self.reward_term(x0, cond)

    def disc_loss(self, gen: torch.Generator, n: int) -> torch.Tensor:
        x0, cond = self.generate(gen, n, grad=False)
        x_t, t, s = self._steps(x0, gen)
        with torch.no_grad():
            x_real = L.euler_jump(x_t, t, self.teacher_velocity(x_t, t, cond), s)
            x_fake = L.euler_jump(x_t, t, self.fake_velocity(x_t, t, cond), s)
        real = self.logits(x_real, s, cond)
        loss = L.hinge_d(real, self.logits(x_fake, s, cond))
        if self.o.r1 > 0:
            jitter = x_real + self.o.r1_sigma * self.noise_like(x_real, gen)
            loss = loss + self.o.r1 * L.approx_r(real, self.logits(jitter, s, cond))
        return loss

    def phases(self, step: int) -> list[Phase]:
        g = [Phase("generator", self.g_opt, self.trainable(self.student), self.generator_loss)]
        critics = [Phase("disc", self.d_opt, list(self.disc.parameters()), self.disc_loss), self.fake_phase()]
        return (g if self.generator_turn(step) else []) + critics


class ADP(_Discriminated):
    """Adversarial distillation pre-training on teacher ODE pairs (DMDX stage 1): the student denoises
    the pair's interpolant at a cubic high-noise t. A hybrid discriminator judges its x0 against the
    pair's: heads on the frozen teacher after re-noising both sides to a uniform t' (weight 1 - pixel),
    and a patch discriminator on the decoded images (weight `pixel`; skipped where the target cannot
    decode)."""

    name = "adp"

    def __init__(
        self, target: DistillTarget, student: nn.Module, options: Options, shard: Shard = None
    ) -> None:
        super().__init__(target, student, options, shard)
        self.pixel = options.pixel if options.pixel > 0 and _decodes(target) else 0.0
        self.pdisc: nn.Module | None = None
        if self.pixel:
            self.pdisc = self.shard(L.PixelDiscriminator().to(target.device))
            self.p_opt = _adam(list(self.pdisc.parameters()), options.critic_lr)

    def modules(self) -> dict[str, nn.Module]:
        return {**super().modules(), **({"pdisc": self.pdisc} if self.pdisc is not None else {})}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {**super().optimizers(), **({"pdisc": self.p_opt} if self.pdisc is not None else {})}

    def _pair(self, gen: torch.Generator, n: int, grad: bool) -> tuple[torch.Tensor, torch.Tensor, Any]:
        z, x0, cond = self.teacher_sample(gen, n)
        t = L.cubic_t(n, gen).to(z.device)
        x_t = L.noised(x0, z, t)
        with torch.set_grad_enabled(grad):
            return x0, L.to_x0(x_t, t, self.student_velocity(x_t, t, cond)), cond

    def _judge(self, x: torch.Tensor, gen: torch.Generator, cond: Any) -> torch.Tensor:
        t = L.uniform_t(x.shape[0], gen, 0.0, 1.0).to(x.device)  # the discriminator's uniform schedule
        x_t = L.noised(x, self.noise_like(x, gen), t)
        return self.disc(self.target.features(self.target.teacher, x_t, t, cond))

    def generator_loss(self, gen: torch.Generator, n: int) -> torch.Tensor:
        x0, pred, cond = self._pair(gen, n, grad=True)
        loss = (1 - self.pixel) * L.hinge_g(self._judge(pred, gen, cond))
        if self.pdisc is not None:
            loss = loss + self.pixel * L.hinge_g(self.pdisc(self.target.decode(pred)))
        if self.o.mse:
            loss = loss + self.o.mse * torch.nn.functional.mse_loss(pred, x0)
        return loss + self.reward_term(pred, cond)

    def disc_loss(self, gen: torch.Generator, n: int) -> torch.Tensor:
        x0, pred, cond = self._pair(gen, n, grad=False)
        state = gen.get_state()  # the same t' and noise on both sides
        real = self._judge(x0, gen, cond)
        gen.set_state(state)
        loss = (1 - self.pixel) * L.hinge_d(real, self._judge(pred, gen, cond))
        if self.pdisc is not None:
            with torch.no_grad():
                real_px, fake_px = self.target.decode(x0), self.target.decode(pred)
            loss = loss + self.pixel * L.hinge_d(self.pdisc(real_px), self.pdisc(fake_px))
        return loss

    def phases(self, step: int) -> list[Phase]:
        critics = list(self.disc.parameters()) + (list(self.pdisc.parameters()) if self.pdisc else [])
        optimizer = _Joint(self.d_opt, self.p_opt) if self.pdisc is not None else self.d_opt
        return [
            Phase("generator", self.g_opt, self.trainable(self.student), self.generator_loss),
            Phase("disc", optimizer, critics, self.disc_loss),
        ]


class APT(_Discriminated):
    """Adversarial post-training against real data (APT, SeedVR2, AAPT): the student's x0 (one step, or
    backward simulation for several) for a real sample's caption is judged against the real latents by
    heads on the frozen teacher, both re-noised to the same t ~ U(0, 1). Relativistic loss (RpGAN),
    approximate R1 on real and R2 on generated samples, and feature matching (batch means of the
    teacher's features) for the generator. Needs `extra["data"]` (`seed distill --data DIR`)."""

    name = "apt"

    def __init__(
        self, target: DistillTarget, student: nn.Module, options: Options, shard: Shard = None
    ) -> None:
        super().__init__(target, student, options, shard)
        self.data = options.extra.get("data")
        if self.data is None:
            raise UsageError("method 'apt' trains against real data: give --data DIR (images + captions)")

    def _sides(self, gen: torch.Generator, n: int, grad: bool) -> tuple[torch.Tensor, torch.Tensor, Any]:
        real, captions = self.data.batch(n, gen)
        cond = self.target.conditions(captions)
        fake, _ = self.generate(gen, n, grad, cond)
        return real.to(fake.device), fake, cond

    def _judge(
        self, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, cond: Any
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = self.target.features(self.target.teacher, L.noised(x, noise, t), t, cond)
        return self.disc(feats), feats

    def _t_noise(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return L.uniform_t(x.shape[0], gen, 0.0, 1.0).to(x.device), self.noise_like(x, gen)

    def generator_loss(self, gen: torch.Generator, n: int) -> torch.Tensor:
        real, fake, cond = self._sides(gen, n, grad=True)
        t, noise = self._t_noise(real, gen)
        with torch.no_grad():
            d_real, f_real = self._judge(real, t, noise, cond)
        d_fake, f_fake = self._judge(fake, t, noise, cond)
        loss = L.rpgan_g(d_real, d_fake)
        if self.o.fm:
            match = [(a.mean(0) - b.mean(0)).abs().mean() for a, b in zip(f_fake, f_real, strict=True)]
            loss = loss + self.o.fm * torch.stack(match).mean()
        return loss + self.reward_term(fake, cond)

    def disc_loss(self, gen: torch.Generator, n: int) -> torch.Tensor:
        real, fake, cond = self._sides(gen, n, grad=False)
        t, noise = self._t_noise(real, gen)
        d_real, _ = self._judge(real, t, noise, cond)
        d_fake, _ = self._judge(fake, t, noise, cond)
        loss = L.rpgan_d(d_real, d_fake)
        for weight, x, d in ((self.o.r1, real, d_real), (self.o.r2, fake, d_fake)):
            if weight > 0:
                jitter = x + self.o.r1_sigma * self.noise_like(x, gen)
                loss = loss + weight * L.approx_r(d, self._judge(jitter, t, noise, cond)[0])
        return loss

    def phases(self, step: int) -> list[Phase]:
        g = [Phase("generator", self.g_opt, self.trainable(self.student), self.generator_loss)]
        return (g if self.generator_turn(step) else []) + [
            Phase("disc", self.d_opt, list(self.disc.parameters()), self.disc_loss)
        ]


def _decodes(target: DistillTarget) -> bool:
    return type(target).decode is not DistillTarget.decode


class _Joint:
    """Two optimizers stepped as one phase (ADP's latent and pixel discriminators share a loss)."""

    def __init__(self, *optimizers: torch.optim.Optimizer) -> None:
        self.optimizers = optimizers

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.optimizers:
            o.step()


class CFGDistill(Method):
    """Guidance distillation: a student with a guidance-scale embedding matches the teacher's CFG
    velocity in one call, w ~ U[1, max_guidance], on noised teacher samples."""

    name = "cfg"
    guidance_embed = True

    def loss(self, gen: torch.Generator, n: int) -> torch.Tensor:
        w = 1 + (self.o.max_guidance - 1) * torch.rand(n, generator=gen).to(self.target.device)
        _, x0, cond = self.teacher_sample(gen, n, w)
        t = L.uniform_t(n, gen, 0.0, 1.0, self.target.shift).to(x0.device)
        x_t = L.noised(x0, self.noise_like(x0, gen), t)
        v = self.target.velocity(self.student, x_t, t, cond, w)
        return torch.nn.functional.mse_loss(v, self.teacher_velocity(x_t, t, cond, w))

    def phases(self, step: int) -> list[Phase]:
        return [Phase("generator", self.g_opt, self.trainable(self.student), self.loss)]


class KD(Method):
    """Knowledge distillation on teacher ODE pairs (Luhman & Luhman 2021), with backward simulation: the
    student runs k ~ U{0..steps-1} of its own steps from the pair's noise without gradient, and its x0
    from there must be the teacher's sample from that noise. An Euler step on an x0 prediction re-noises
    toward the same noise, so every step of a multi-step student aims at the one target and is trained
    where it samples. Cheap with a bank of pairs (`--pairs`); without one the teacher runs every step."""

    name = "kd"
    # a fixed regression target, not a game: momentum helps (session 19's students were trained so)
    betas = (0.9, 0.999)

    def loss(self, gen: torch.Generator, n: int) -> torch.Tensor:
        noise, x0, cond = self.teacher_sample(gen, n)
        pred, _ = self.generate(gen, n, True, cond, noise)
        return torch.nn.functional.mse_loss(pred, x0) + self.reward_term(pred, cond)

    def phases(self, step: int) -> list[Phase]:
        return [Phase("generator", self.g_opt, self.trainable(self.student), self.loss)]


class TSCD(Method):
    """Trajectory-segmented consistency distillation (Hyper-SD): `steps` segments; from t_n the student
    jumps to its segment's lower edge and must land where one teacher ODE step then the EMA student land
    (`tscd_target="ema"`, the consistency form), or where the teacher's own ODE lands (`"teacher"`: the
    target unrolled over the rest of the segment, on the teacher's trajectory, with no bootstrapping)."""

    name = "tscd"

    def __init__(
        self, target: DistillTarget, student: nn.Module, options: Options, shard: Shard = None
    ) -> None:
        super().__init__(target, student, options, shard)
        if options.tscd_target not in ("ema", "teacher"):
            raise UsageError(f"tscd: target '{options.tscd_target}'; use ema or teacher")
        if options.tscd_points not in ("any", "starts", "own"):
            raise UsageError(f"tscd: points '{options.tscd_points}'; use any, starts or own")
        if options.tscd_points != "any" and options.tscd_target != "teacher":
            raise UsageError(f"tscd: --tscd-points {options.tscd_points} needs --tscd-target teacher")
        if options.tscd_target == "teacher" and options.teacher_steps % options.steps:
            raise UsageError(
                f"tscd with the teacher's target: --teacher-steps ({options.teacher_steps}) must be a "
                f"multiple of the student's steps ({options.steps})"
            )
        self.ema: nn.Module | None = None  # the consistency form's target network only
        if options.tscd_target == "ema":
            self.ema = target.make_student(guidance_embed=target.embeds_guidance(student))
            self.ema.load_state_dict(full_state(student))
            self.ema.requires_grad_(False).eval()
        self.fine = flow_timesteps(options.teacher_steps * options.steps, target.shift, device=target.device)
        # the teacher's grid: the student's grid is every `per`-th point of it (both shift the same linspace)
        self.coarse = flow_timesteps(options.teacher_steps, target.shift, device=target.device)

    def modules(self) -> dict[str, nn.Module]:
        return {} if self.ema is None else {"ema": self.ema}

    def own_loss(self, gen: torch.Generator, n: int) -> torch.Tensor:
        """From every segment start of the student's own chain (run without gradient), its jump must land
        where the teacher's ODE from that state lands at the segment's end (DAgger-style: the student
        is trained where it will be, not only on the teacher's trajectory)."""
        cond = self.sample_conditions(gen, n)
        x = self.target.sample_noise(n, gen)
        per = self.o.teacher_steps // self.o.steps
        starts, targets = [], []
        with torch.no_grad():
            for k in range(self.o.steps):
                starts.append(x)
                targets.append(self.teacher_ode(x, cond, self.coarse, k * per, (k + 1) * per)[-1])
                if k + 1 < self.o.steps:  # the chain's last jump would only be thrown away
                    t, s = self.grid[k].expand(n), self.grid[k + 1].expand(n)
                    x = L.euler_jump(x, t, self.student_velocity(x, t, cond), s)
        x_t, target = torch.cat(starts), torch.cat(targets)  # step-major rows, as "starts"
        t, s = self.grid[:-1].repeat_interleave(n), self.grid[1:].repeat_interleave(n)
        cond = self.target.repeat_conditions(cond, self.o.steps)
        pred = L.euler_jump(x_t, t, self.student_velocity(x_t, t, cond), s)
        return torch.nn.functional.mse_loss(pred, target)

    def teacher_loss(self, gen: torch.Generator, n: int) -> torch.Tensor:
        if self.o.tscd_points == "own":
            return self.own_loss(gen, n)
        states, cond = self.teacher_trajectory(gen, n)  # (T + 1, n, ...)
        per = self.o.teacher_steps // self.o.steps  # teacher steps per student step
        if self.o.tscd_points == "starts":  # all `steps` jumps of each trajectory, step-major rows
            starts = torch.arange(0, self.o.teacher_steps, per, device=states.device)
            x_t, target = states[starts].flatten(0, 1), states[starts + per].flatten(0, 1)
            t, s = self.coarse[starts].repeat_interleave(n), self.coarse[starts + per].repeat_interleave(n)
            cond = self.target.repeat_conditions(cond, self.o.steps)
        else:
            i = torch.randint(0, self.o.teacher_steps, (n,), generator=gen).to(states.device)
            end = (i // per + 1) * per
            rows = torch.arange(n, device=states.device)
            x_t, target = states[i, rows], states[end, rows]
            t, s = self.coarse[i], self.coarse[end]
        pred = L.euler_jump(x_t, t, self.student_velocity(x_t, t, cond), s)
        return torch.nn.functional.mse_loss(pred, target)

    def loss(self, gen: torch.Generator, n: int) -> torch.Tensor:
        if self.o.tscd_target == "teacher":
            return self.teacher_loss(gen, n)
        _, x0, cond = self.teacher_sample(gen, n)
        i = torch.randint(0, len(self.fine) - 1, (n,), generator=gen).to(x0.device)
        t, s = self.fine[i], self.fine[i + 1]
        per = self.o.teacher_steps  # fine steps per segment: edges sit at multiples of `per`
        end = self.fine[(i // per + 1) * per]
        x_t = L.noised(x0, self.noise_like(x0, gen), t)
        assert self.ema is not None
        with torch.no_grad():
            x_s = L.euler_jump(x_t, t, self.teacher_velocity(x_t, t, cond), s)
            v_ema = self.target.velocity(self.ema, x_s, s, cond, self.student_guidance(cond))
            target = L.euler_jump(x_s, s, v_ema, end)
        pred = L.euler_jump(x_t, t, self.student_velocity(x_t, t, cond), end)
        return torch.nn.functional.mse_loss(pred, target)

    def after_step(self) -> None:
        if self.ema is None:
            return
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.student.parameters(), strict=True):
                e.lerp_(_full(p.detach()), 0.05)

    def phases(self, step: int) -> list[Phase]:
        return [Phase("generator", self.g_opt, self.trainable(self.student), self.loss)]


METHODS: dict[str, type[Method]] = {m.name: m for m in (CFGDistill, TSCD, KD, ADP, DMD2, ADM, APT)}
