"""Each method learns on the 2-D toy: its student's samples move toward the teacher's many-step samples
(MMD falls), and the regression methods' losses fall. Adversarial and distribution-matching losses are
not monotone by nature, so for them the quality proxy is the test."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seed_distill import losses as L
from seed_distill import toy
from seed_distill.methods import Options
from seed_distill.trainer import RunConfig, distill, read_log, recipe_stages


@pytest.fixture(scope="module")
def target() -> toy.ToyTarget:
    mix = toy.ring()
    return toy.ToyTarget(toy.train_teacher(mix, steps=800, batch=256), mix, guidance=1.0)


def _proxy(target: toy.ToyTarget, net: torch.nn.Module, steps: int) -> float:
    reference, _ = toy.sample_student(target, target.teacher, 2000, 16, 1.0, seed=5)
    x, _ = toy.sample_student(target, net, 2000, steps, 1.0, seed=6)
    return toy.mmd(x, reference)


def _train(
    target: toy.ToyTarget, tmp: Path, method: str, student_steps: int, steps: int, ratio: int, **extra: object
) -> list:
    options = Options(**{"steps": student_steps, "lr": 1e-3, "ratio": ratio, "teacher_steps": 4, **extra})  # type: ignore[arg-type]
    distill(target, tmp, recipe_stages(method, None), options, RunConfig(steps=steps, batch=128, ema=0.0))
    return read_log(tmp)


@pytest.mark.parametrize(
    ("method", "steps", "ratio", "factor"),
    [("dmd2", 300, 2, 0.2), ("adm", 300, 2, 0.6), ("adp", 200, 1, 0.2), ("kd", 200, 1, 0.2)],
)
def test_one_step_students_learn(
    target: toy.ToyTarget, tmp_path: Path, method: str, steps: int, ratio: int, factor: float
) -> None:
    before = _proxy(target, target.teacher, 1)  # the teacher sampled in one step: a blurred mean
    _train(target, tmp_path, method, 1, steps, ratio)
    after = _proxy(target, target.students[-1]["net"], 1)
    assert after < factor * before, (method, before, after)


# the EMA target walks a fine grid of teacher_steps x steps = 8 steps; the teacher's target gets as many
@pytest.mark.parametrize(
    ("aim", "teacher_steps", "points"),
    [("ema", 4, "any"), ("teacher", 8, "any"), ("teacher", 8, "starts"), ("teacher", 8, "own")],
)
def test_tscd_learns(
    target: toy.ToyTarget, tmp_path: Path, aim: str, teacher_steps: int, points: str
) -> None:
    before = _proxy(target, target.teacher, 2)
    log = _train(
        target, tmp_path, "tscd", 2, 200, 1, tscd_target=aim, teacher_steps=teacher_steps, tscd_points=points
    )
    after = _proxy(target, target.students[-1]["net"], 2)
    first, last = (sum(e["generator"] for e in part) / len(part) for part in (log[:20], log[-20:]))
    assert after < 0.5 * before and last < 0.7 * first, (before, after, first, last)


def test_cfg_distillation_matches_guided_teacher(tmp_path: Path) -> None:
    mix = toy.ring()
    target = toy.ToyTarget(toy.train_teacher(mix, steps=400, batch=256), mix, guidance=3.0)
    gen = torch.Generator().manual_seed(0)
    x, t = torch.randn(512, 2, generator=gen), torch.rand(512, generator=gen)
    cond = target.sample_conditions(512, gen)

    def error(net: torch.nn.Module) -> float:
        with torch.no_grad():
            guided = [target.velocity(target.teacher, x, t, cond, w) for w in (2.0, 4.0)]
            mine = [target.velocity(net, x, t, cond, w) for w in (2.0, 4.0)]
        return sum(float((a - b).pow(2).mean()) for a, b in zip(guided, mine, strict=True))

    before = error(target.make_student(guidance_embed=True))  # starts as the unguided teacher
    options = Options(steps=4, lr=2e-3, teacher_steps=4, max_guidance=5.0)
    distill(target, tmp_path, recipe_stages("cfg", None), options, RunConfig(steps=250, batch=128, ema=0.0))
    log = read_log(tmp_path)
    after = error(target.students[-1]["net"])
    assert after < 0.3 * before, (before, after)
    assert sum(e["generator"] for e in log[-20:]) < sum(e["generator"] for e in log[:20])
    assert target.students[-1]["info"]["guidance"] == 3.0  # the scale it is sampled with by default


def test_recipe_runs_its_stages_in_order(target: toy.ToyTarget, tmp_path: Path) -> None:
    options = Options(steps=2, lr=1e-3, teacher_steps=2)
    distill(target, tmp_path, recipe_stages(None, "hyper"), options, RunConfig(steps=10, batch=16))
    log = read_log(tmp_path)
    assert [e["method"] for e in log] == ["cfg"] * 2 + ["tscd"] * 4 + ["adm"] * 4
    info = target.students[-1]["info"]
    assert info["method"] == "cfg+tscd+adm" and [s["method"] for s in info["recipe"]] == [
        "cfg",
        "tscd",
        "adm",
    ]


def test_dmd_loss_has_the_dmd_gradient() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, generator=gen, requires_grad=True)
    real, fake = torch.randn(3, 4, generator=gen), torch.randn(3, 4, generator=gen)
    L.dmd_loss(x, real, fake).backward()
    scale = (x.detach() - real).abs().mean(1, keepdim=True)
    expected = (fake - real) / scale / x.numel()  # mean over elements
    assert torch.allclose(x.grad, expected, atol=1e-6)


def test_gan_losses_prefer_the_right_side() -> None:
    good, bad = torch.full((4,), 2.0), torch.full((4,), -2.0)
    for d_loss in (L.hinge_d, L.ns_d, L.rpgan_d):
        assert d_loss(good, bad) < d_loss(bad, good)
    assert L.hinge_g(good) < L.hinge_g(bad) and L.ns_g(good) < L.ns_g(bad)
    assert L.rpgan_g(bad, good) < L.rpgan_g(good, bad)
    assert float(L.approx_r(good, good)) == 0.0


def test_cubic_schedule_favours_high_noise() -> None:
    t = L.cubic_t(20000, torch.Generator().manual_seed(0))
    assert 0.75 < float((t > 0.5).float().mean()) < 0.83 and float(t.min()) >= 0.0199


def test_apt_learns_the_real_data(target: toy.ToyTarget, tmp_path: Path) -> None:
    """Adversarial post-training: the one-step student (the teacher's blurred one-step mean at first)
    moves onto the real mixture it is shown."""
    real = target.mix.sample(2000, torch.Generator().manual_seed(7))[0]
    x, _ = toy.sample_student(target, target.teacher, 2000, 1, 1.0, seed=6)
    before = toy.mmd(x, real)
    options = Options(steps=1, lr=1e-3, ratio=1, r1=1.0, r2=1.0, fm=1.0)
    options.extra["data"] = target.real_data(4096)
    distill(target, tmp_path, recipe_stages("apt", None), options, RunConfig(steps=250, batch=128, ema=0.0))
    x, _ = toy.sample_student(target, target.students[-1]["net"], 2000, 1, 1.0, seed=6)
    after = toy.mmd(x, real)
    assert after < 0.3 * before, (before, after)


def test_apt_refuses_to_run_without_data(target: toy.ToyTarget, tmp_path: Path) -> None:
    from seed_core.errors import UsageError

    with pytest.raises(UsageError, match="--data DIR"):
        distill(target, tmp_path, recipe_stages("apt", None), Options(steps=1), RunConfig(steps=1, batch=4))


class _Reward(torch.nn.Module):
    """A differentiable toy reward: how far right a point lies (x > 0 is "good")."""

    margin = 3.0

    def forward(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        assert len(prompts) == images.shape[0]
        return images[:, 0]


class _DecodingTarget(toy.ToyTarget):
    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_reward_term_moves_samples_toward_the_reward(target: toy.ToyTarget, tmp_path: Path) -> None:
    """ReFL on top of ADP: with the reward term the one-step student puts more mass where the reward is
    high than the same run without it, and the logged reward rises."""
    decoding = _DecodingTarget(target.teacher, target.mix)

    def right_share(reward_weight: float, out: Path) -> tuple[float, list]:
        options = Options(steps=1, lr=1e-3, ratio=1, pixel=0.0, reward_weight=reward_weight)
        options.extra["reward"] = _Reward()
        distill(decoding, out, recipe_stages("adp", None), options, RunConfig(steps=120, batch=128, ema=0.0))
        x, _ = toy.sample_student(decoding, decoding.students[-1]["net"], 2000, 1, 1.0, seed=6)
        return float((x[:, 0] > 0).float().mean()), read_log(out)

    plain, _ = right_share(0.0, tmp_path / "plain")
    rewarded, log = right_share(1.0, tmp_path / "reward")
    assert rewarded > plain + 0.15, (plain, rewarded)
    first, last = (sum(e["reward"] for e in part) / len(part) for part in (log[:10], log[-10:]))
    assert last > first, (first, last)


def test_refl_hinge_stops_at_the_margin() -> None:
    r = torch.tensor([0.0, 2.0, 5.0], requires_grad=True)
    L.refl_hinge(r, 3.0).backward()
    assert r.grad is not None and r.grad.tolist() == pytest.approx([-1 / 3, -1 / 3, 0.0])


def test_tscd_refuses_a_target_it_cannot_reach(target: toy.ToyTarget) -> None:
    from seed_core.errors import UsageError
    from seed_distill.methods import TSCD

    student = target.make_student()
    with pytest.raises(
        UsageError, match="--teacher-steps \\(6\\) must be a multiple of the student's steps \\(4\\)"
    ):
        TSCD(target, student, Options(steps=4, teacher_steps=6, tscd_target="teacher"))
    with pytest.raises(UsageError, match="target 'nearest'; use ema or teacher"):
        TSCD(target, student, Options(tscd_target="nearest"))
    with pytest.raises(UsageError, match="points 'middle'; use any, starts or own"):
        TSCD(target, student, Options(tscd_points="middle"))
    with pytest.raises(UsageError, match="--tscd-points starts needs --tscd-target teacher"):
        TSCD(target, student, Options(tscd_points="starts", tscd_target="ema"))


def test_tscd_from_the_starts_trains_on_every_jump_of_the_sampler(target: toy.ToyTarget) -> None:
    """With `tscd_points="starts"` each teacher trajectory gives one pair per student step: from the
    teacher's state at a segment's start to its state at the segment's end."""
    from seed_distill.methods import TSCD

    student = target.make_student()
    method = TSCD(target, student, Options(steps=2, teacher_steps=4, tscd_points="starts"))
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    real = method.student_velocity

    def spy(x: torch.Tensor, t: torch.Tensor, cond: object) -> torch.Tensor:
        seen.append((x.detach().clone(), t.detach().clone()))
        return real(x, t, cond)

    method.student_velocity = spy  # type: ignore[method-assign]
    states, _ = method.teacher_trajectory(torch.Generator().manual_seed(3), 5)
    method.teacher_loss(torch.Generator().manual_seed(3), 5)
    ((x, t),) = seen
    assert x.shape[0] == 10  # 5 trajectories x 2 jumps
    torch.testing.assert_close(t, method.coarse[torch.tensor([0, 2])].repeat_interleave(5))
    torch.testing.assert_close(x, states[torch.tensor([0, 2])].flatten(0, 1))


def test_tscd_own_points_start_where_the_student_samples(target: toy.ToyTarget) -> None:
    """With `tscd_points="own"` the jumps start at the states of the student's own chain (the first at
    the noise) and the targets are the teacher's ODE from each of them over its segment."""
    from seed_distill import losses as L
    from seed_distill.methods import TSCD

    student = target.make_student()
    with torch.no_grad():  # a student unlike the teacher, so its chain leaves the teacher's trajectory
        for p in student.parameters():
            p.add_(0.3 * torch.randn_like(p))
    method = TSCD(target, student, Options(steps=2, teacher_steps=4, tscd_points="own"))
    seen: list[torch.Tensor] = []
    real = method.student_velocity

    def spy(x: torch.Tensor, t: torch.Tensor, cond: object) -> torch.Tensor:
        seen.append(x.detach().clone())
        return real(x, t, cond)

    method.student_velocity = spy  # type: ignore[method-assign]
    method.teacher_loss(torch.Generator().manual_seed(3), 5)
    chain0, trained = seen  # the chain's one jump that is used (no gradient), then the training pass
    cond = target.sample_conditions(5, torch.Generator().manual_seed(3))
    with torch.no_grad():  # where the student's first jump lands: the second start
        t0, t1 = method.grid[0].expand(5), method.grid[1].expand(5)
        chain1 = L.euler_jump(chain0, t0, real(chain0, t0, cond), t1)
    assert trained.shape[0] == 10
    torch.testing.assert_close(trained, torch.cat((chain0, chain1)))
    x = chain0
    for i in range(2):  # the teacher's first segment from the noise is not where the student went
        t, s = method.coarse[i].expand(5), method.coarse[i + 1].expand(5)
        x = L.euler_jump(x, t, method.teacher_velocity(x, t, cond), s)
    assert not torch.allclose(x, chain1, atol=1e-3)


def test_critics_warm_up_before_the_first_generator_update(target: toy.ToyTarget, tmp_path: Path) -> None:
    from seed_distill.trainer import Stage

    stages = (Stage("tscd", 0.5), Stage("adm", 0.5))  # the adm stage runs steps 8-15
    options = Options(steps=2, lr=1e-3, ratio=2, teacher_steps=4, critic_warmup=3)
    distill(target, tmp_path, stages, options, RunConfig(steps=16, batch=16, ema=0.0))
    turns = [e["step"] - 1 for e in read_log(tmp_path) if e["method"] == "adm" and "generator" in e]
    assert turns == [12, 14]  # steps 8-10 train the critics only; then every `ratio` steps


def test_hyper_has_a_one_step_finish() -> None:
    stages = recipe_stages(None, "hyper", 1)
    assert [s.method for s in stages] == ["cfg", "tscd", "tscd", "tscd", "adm", "adp"]
    assert [s.options.get("steps") for s in stages if s.method == "tscd"] == [4, 2, 1]  # segments shrink
    assert [s.method for s in recipe_stages(None, "hyper", 4)] == ["cfg", "tscd", "adm"]


def test_a_stage_with_its_own_steps_trains_on_its_own_grid(target: toy.ToyTarget, tmp_path: Path) -> None:
    from seed_distill.trainer import Stage

    before = _proxy(target, target.teacher, 2)
    stages = (Stage("tscd", 0.5, {"steps": 4}), Stage("tscd", 0.5, {"steps": 2}))
    options = Options(steps=2, lr=1e-3, teacher_steps=8)
    distill(target, tmp_path, stages, options, RunConfig(steps=200, batch=128, ema=0.0))
    student = target.students[-1]
    assert student["info"]["steps"] == 2 and [s["options"] for s in student["info"]["recipe"]] == [
        {"steps": 4},
        {"steps": 2},
    ]
    assert _proxy(target, student["net"], 2) < 0.5 * before


def test_dmd2_with_a_gan_on_real_data_learns(target: toy.ToyTarget, tmp_path: Path) -> None:
    """DMD2's full form: distribution matching plus the GAN term against real data (heads on the fake
    score); the one-step student still moves onto the data, and the heads are trained and saved."""
    before = _proxy(target, target.teacher, 1)
    options = Options(steps=1, lr=1e-3, ratio=2, gan=0.05)
    options.extra["data"] = target.real_data(4096)
    distill(target, tmp_path, recipe_stages("dmd2", None), options, RunConfig(steps=300, batch=128, ema=0.0))
    after = _proxy(target, target.students[-1]["net"], 1)
    assert after < 0.2 * before, (before, after)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert "heads" in state["modules"] and "heads" in state["optimizers"]


class _ImageTarget(toy.ToyTarget):
    """The toy with a fixed "decoder" from its 2-D points to 3 x 8 x 8 images, so that ADP's pixel
    discriminator has pictures to judge."""

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        basis = torch.linspace(-1, 1, 3 * 8 * 8).view(1, 3, 8, 8)
        return torch.tanh(x[:, :1, None, None] * basis + x[:, 1:, None, None] * basis.flip(-1))


def test_adp_with_the_pixel_discriminator_learns(target: toy.ToyTarget, tmp_path: Path) -> None:
    images = _ImageTarget(target.teacher, target.mix)
    before = _proxy(images, images.teacher, 1)
    options = Options(steps=1, lr=1e-3, ratio=1, pixel=0.5)
    distill(images, tmp_path, recipe_stages("adp", None), options, RunConfig(steps=200, batch=128, ema=0.0))
    after = _proxy(images, images.students[-1]["net"], 1)
    assert after < 0.3 * before, (before, after)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert "pdisc" in state["modules"] and "pdisc" in state["optimizers"]


def test_regression_uses_momentum_and_the_games_do_not(target: toy.ToyTarget) -> None:
    from seed_distill.methods import ADM, KD

    kd = KD(target, target.make_student(), Options(steps=1))
    assert kd.g_opt.param_groups[0]["betas"] == (0.9, 0.999)
    adm = ADM(target, target.make_student(), Options(steps=1))
    assert adm.g_opt.param_groups[0]["betas"] == (0.0, 0.99)
    assert all(group["betas"] == (0.0, 0.99) for o in adm.optimizers().values() for group in o.param_groups)
