"""The bank of teacher ODE pairs (`seed distill --pairs`): what it holds, that an interrupted build ends
as an uninterrupted one, that a mismatched or corrupt bank is refused, and that kd learns from it without
running the teacher."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seed_core.errors import ConfigError, UsageError
from seed_distill import toy
from seed_distill.methods import Options
from seed_distill.pairs import FILE, pair_bank
from seed_distill.trainer import RunConfig, distill, read_log, recipe_stages


@pytest.fixture(scope="module")
def target() -> toy.ToyTarget:
    mix = toy.ring()
    return toy.ToyTarget(toy.train_teacher(mix, steps=800, batch=256), mix, guidance=1.0)


def _bank(target: toy.ToyTarget, directory: Path, count: int, **kw: object):  # type: ignore[no-untyped-def]
    options = {"teacher": "toy", "teacher_steps": 4, "guidance": 1.0, "seed": 3, **kw}
    return pair_bank(target, directory, count, **options)  # type: ignore[arg-type]


def test_the_bank_holds_the_teachers_ode_from_its_noise(target: toy.ToyTarget, tmp_path: Path) -> None:
    bank = _bank(target, tmp_path / "b", 100)  # whole chunks of 64
    assert len(bank) == 128 and bank.noise.shape == bank.x0.shape == (128, 2)
    x = bank.noise.float()
    cond = target.conditions(bank.prompts)
    for i in range(4):  # the teacher's Euler ODE, redone here
        t, s = 1 - i / 4, 1 - (i + 1) / 4
        x = x + (s - t) * target.velocity(target.teacher, x, torch.full((128,), t), cond)
    assert (bank.x0.float() - x).abs().max() < 5e-3


def test_an_interrupted_build_ends_as_an_uninterrupted_one(target: toy.ToyTarget, tmp_path: Path) -> None:
    whole = _bank(target, tmp_path / "whole", 300)
    _bank(target, tmp_path / "part", 130)  # "killed" after 3 chunks: the file holds what was saved
    resumed = _bank(target, tmp_path / "part", 300)
    assert len(whole) == len(resumed) == 320
    assert torch.equal(whole.noise, resumed.noise) and torch.equal(whole.x0, resumed.x0)
    assert whole.prompts == resumed.prompts
    assert len(_bank(target, tmp_path / "part", 50)) == 320  # a larger bank is used whole


def test_a_mismatched_or_corrupt_bank_is_refused(target: toy.ToyTarget, tmp_path: Path) -> None:
    _bank(target, tmp_path / "b", 64)
    with pytest.raises(UsageError, match="made with teacher_steps=4, this run's is 8"):
        _bank(target, tmp_path / "b", 64, teacher_steps=8)
    with pytest.raises(UsageError, match="made with seed=3, this run's is 0"):
        _bank(target, tmp_path / "b", 64, seed=0)
    target.guidance_interval = (0.0, 0.9)  # a teacher now guided only below noise level 0.9
    try:
        with pytest.raises(UsageError, match=r"guidance_interval=\[0.0, 1.0\], this run's is \[0.0, 0.9\]"):
            _bank(target, tmp_path / "b", 64)
    finally:
        del target.guidance_interval
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / FILE).write_bytes(b"not safetensors")
    with pytest.raises(ConfigError, match="not a readable pair bank"):
        _bank(target, tmp_path / "c", 64)
    with pytest.raises(UsageError, match="--pair-precision fp16"):
        _bank(target, tmp_path / "d", 64, precision="fp16")


def test_kd_learns_from_the_bank_without_running_the_teacher(target: toy.ToyTarget, tmp_path: Path) -> None:
    """A one-step student of the toy trained on a bank: its samples move toward the teacher's (MMD
    falls to a fifth) and the regression loss falls, and the teacher is never called while it trains."""
    bank = _bank(target, tmp_path / "b", 4096)
    reference, _ = toy.sample_student(target, target.teacher, 2000, 16, 1.0, seed=5)
    before = toy.mmd(toy.sample_student(target, target.teacher, 2000, 1, 1.0, seed=6)[0], reference)
    calls = []
    velocity = target.velocity

    def counted(net, *args, **kw):  # type: ignore[no-untyped-def]
        calls.append(net is target.teacher)
        return velocity(net, *args, **kw)

    target.velocity = counted  # type: ignore[method-assign]
    try:
        options = Options(steps=1, lr=1e-3, teacher_steps=4, extra={"pairs": bank})
        distill(
            target,
            tmp_path / "run",
            recipe_stages("kd", None),
            options,
            RunConfig(steps=200, batch=128, ema=0.0),
        )
    finally:
        del target.velocity
    assert calls and not any(calls)
    after = toy.mmd(
        toy.sample_student(target, target.students[-1]["net"], 2000, 1, 1.0, seed=6)[0], reference
    )
    log = read_log(tmp_path / "run")
    assert after < 0.2 * before, (before, after)
    first, last = (sum(e["generator"] for e in part) / 20 for part in (log[:20], log[-20:]))
    assert last < 0.5 * first, (first, last)


def test_dmd2_with_the_regression_term_keeps_the_teachers_pairing(
    target: toy.ToyTarget, tmp_path: Path
) -> None:
    """DMD's regression loss (`--mse` on dmd2): the generator starts from the bank's noise and is pulled
    onto the teacher's sample from it. Distribution matching alone may transport noise anywhere on the
    data; with the term the one-step map is closer to the teacher's own ODE map on fresh noise, and the
    samples still match the teacher's distribution."""
    bank = _bank(target, tmp_path / "b", 4096)
    reference, _ = toy.sample_student(target, target.teacher, 2000, 16, 1.0, seed=5)
    gen = torch.Generator().manual_seed(7)
    cond, noise = target.sample_conditions(2000, gen), target.sample_noise(2000, gen)

    def euler(net: torch.nn.Module, steps: int) -> torch.Tensor:
        x, ts = noise, torch.linspace(1, 0, steps + 1)
        with torch.no_grad():
            for i in range(steps):
                x = x + (ts[i + 1] - ts[i]) * target.velocity(net, x, ts[i].expand(2000), cond)
        return x

    paired = euler(target.teacher, 4)  # the bank's ODE, from this noise
    errors = {}
    for weight in (0.0, 1.0):
        options = Options(steps=1, lr=1e-3, ratio=2, teacher_steps=4, mse=weight, extra={"pairs": bank})
        run = RunConfig(steps=300, batch=128, ema=0.0)
        distill(target, tmp_path / f"mse{weight}", recipe_stages("dmd2", None), options, run)
        x = euler(target.students[-1]["net"], 1)
        errors[weight] = float((x - paired).pow(2).sum(-1).mean())
        assert toy.mmd(x, reference) < 0.2 * toy.mmd(euler(target.teacher, 1), reference), weight
    assert errors[1.0] < 0.5 * errors[0.0], errors
    logged = [e["mse"] for e in read_log(tmp_path / "mse1.0") if "mse" in e]  # the term is logged apart
    assert len(logged) >= 100 and sum(logged[-20:]) < sum(logged[:20]), logged[:20]
    assert not any("mse" in e for e in read_log(tmp_path / "mse0.0"))


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("dmd2", Options(mse=-1.0), "loss weights are >= 0; got --mse -1.0"),
        ("kd", Options(mse=1.0), "--mse is read by adp and dmd2 only"),
    ],
)
def test_a_regression_weight_that_does_not_fit_is_refused(
    tmp_path: Path, method: str, options: Options, message: str
) -> None:
    from seed_distill.api import distill_model

    with pytest.raises(UsageError, match=message):
        distill_model("seedream-tiny-random", tmp_path, method=method, prompts=["a"], options=options)
