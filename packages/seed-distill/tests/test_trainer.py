from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seed_core.budget import TimeBudget
from seed_core.errors import UsageError
from seed_distill import toy
from seed_distill.api import prepare_out
from seed_distill.methods import Options
from seed_distill.trainer import RunConfig, distill, read_log, recipe_stages, stage_bounds

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def target() -> toy.ToyTarget:
    mix = toy.ring()
    return toy.ToyTarget(toy.train_teacher(mix, steps=100, batch=64), mix, guidance=2.0)


def _run(target: toy.ToyTarget, out: Path, **kw: object) -> dict[str, torch.Tensor]:
    run = RunConfig(steps=8, batch=16, checkpoint_every=4, ema=0.9)
    distill(target, out, recipe_stages(None, "dmdx"), Options(steps=2, lr=1e-3, ratio=2), run, **kw)  # type: ignore[arg-type]
    return target.students[-1]["net"].state_dict()


def test_killed_run_resumes_to_the_same_end(target: toy.ToyTarget, tmp_path: Path) -> None:
    whole = _run(target, tmp_path / "whole")
    _run(target, tmp_path / "cut", stop_after=6)  # "crashes" after step 6; the last checkpoint is step 4
    resumed = _run(target, tmp_path / "cut", resume=True)
    for key, value in whole.items():
        assert torch.allclose(value, resumed[key], atol=1e-6), key
    a, b = read_log(tmp_path / "whole"), read_log(tmp_path / "cut")
    assert [e["step"] for e in b] == list(range(1, 9))  # steps 5-6 were dropped and run again
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys() and all(x[k] == pytest.approx(y[k], abs=1e-6) for k in x)


ENV = {**{k: v for k, v in os.environ.items() if k != "WORLD_SIZE"}, "OMP_NUM_THREADS": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]


def _worker(out: Path, *flags: str, ranks: int = 2) -> list[dict]:
    command = [*TORCHRUN] if ranks == 2 else [sys.executable]
    subprocess.run([*command, str(HERE / "ddp_worker.py"), str(out), *flags], check=True, env=ENV)
    return read_log(out)


def _same_curve(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) == 6
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in ("generator", "disc", "fake"):
            if key in x:
                assert x[key] == pytest.approx(y[key], rel=1e-4, abs=1e-5), (x, y)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    return _worker(tmp_path_factory.mktemp("one") / "run", ranks=1)


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_processes_follow_one_process(one_process: list[dict], tmp_path: Path, mode: str) -> None:
    flags = ("--fsdp",) if mode == "fsdp" else ()
    _same_curve(_worker(tmp_path / "two", *flags), one_process)
    assert (tmp_path / "two" / "student" / "student.pt").exists()
    if mode == "fsdp":  # killed after step 4 (checkpoint at 3), resumed: the same curve to the end
        _worker(tmp_path / "cut", "--fsdp", "--stop-after=4")
        _same_curve(_worker(tmp_path / "cut", "--fsdp", "--resume"), one_process)


def test_a_user_error_under_nproc_is_one_line_and_its_exit_code(tmp_path: Path) -> None:
    """`seed distill --nproc 2` relaunches itself under torchrun: a user error that every rank meets is
    said once (by rank 0), torchrun's traceback becomes one line, and the exit code is the rank's."""
    command = [sys.executable, "-m", "seed_cli", "distill", "-m", "seedream-tiny-random", "--method", "dmd2"]
    done = subprocess.run(
        [*command, "-o", str(tmp_path / "run"), "--nproc", "2"], env=ENV, capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("ships no prompts.txt") == 1, done.stderr
    assert re.search(r"Error: rank [01] of 2 failed first \(exit code 2\)", done.stderr), done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()


class TickingClock:
    """A clock that moves `tick` seconds each time it is read: a budgeted run's plans, whatever the
    machine's speed."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def test_a_run_under_a_time_budget_ends_with_every_stage_and_a_student(
    target: toy.ToyTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TimeBudget, "clock", staticmethod(TickingClock(0.1)))  # a step takes 0.1 s
    run = RunConfig(steps=10**6, batch=16, checkpoint_every=10**6, minutes=0.02)  # 1.2 s: about 12 steps
    path = distill(target, tmp_path, recipe_stages(None, "dmdx"), Options(steps=2, lr=1e-3, ratio=2), run)
    log = read_log(tmp_path)
    last = log[-1]["step"]
    assert 10 <= last <= 13
    assert [e["step"] for e in log] == list(range(1, last + 1))
    stages = [e["stage"] for e in log]
    assert stages == sorted(stages) and set(stages) == {0, 1}  # both stages of the recipe, in order, once
    assert path.exists() and (tmp_path / "checkpoint.pt").exists()  # the end is checkpointed and exported


def test_a_budgeted_run_resumes_in_its_stage_and_keeps_the_order(
    target: toy.ToyTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TimeBudget, "clock", staticmethod(TickingClock(0.1)))
    stages, options = recipe_stages(None, "dmdx"), Options(steps=2, lr=1e-3, ratio=2)
    run = RunConfig(steps=10**6, batch=16, checkpoint_every=1, minutes=0.02)
    distill(target, tmp_path, stages, options, run, stop_after=3)  # "crashes" after step 3
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert saved["step"] == 3 and saved["stage"] == 0 and saved["ends"][-1] < 10**6  # the plan is saved
    distill(target, tmp_path, stages, options, run, resume=True)
    log = read_log(tmp_path)
    assert [e["step"] for e in log] == list(range(1, len(log) + 1))
    order = [e["stage"] for e in log]
    assert order == sorted(order) and set(order) == {0, 1}  # on from stage 0, then stage 1, once each


def test_a_replanned_run_keeps_its_finished_stages_and_skips_none() -> None:
    from seed_distill.trainer import replan

    stages = recipe_stages(None, "hyper")  # shares 0.2, 0.4, 0.4
    assert replan(stages, stage_bounds(stages, 1000), 0, 0, 500) == stage_bounds(stages, 500)
    ends = stage_bounds(stages, 1000)  # [200, 600, 1000]
    # a quarter into the second stage, the run is cut to 700 steps: the first stage keeps its end, the
    # second has 3/4 of its share left, the third all of it
    assert replan(stages, ends, 1, 300, 700) == [200, 300 + round(400 * 0.3 / 0.7), 700]
    # a cut below what the planned shares would have reached by now skips nothing either
    cut = replan(stages, stage_bounds(stages, 1000), 0, 150, 200)
    assert cut[0] > 150 and cut[0] < cut[1] < cut[2] == 200


def test_stage_bounds_and_bad_names() -> None:
    stages = recipe_stages(None, "hyper")
    assert stage_bounds(stages, 10) == [2, 6, 10]
    with pytest.raises(UsageError, match="unknown recipe"):
        recipe_stages(None, "nope")
    with pytest.raises(UsageError, match="unknown distillation method 'dmd3'"):
        recipe_stages("dmd3", None)
    with pytest.raises(UsageError, match="one of --method or --recipe"):
        recipe_stages("adm", "dmdx")


def test_a_run_started_from_a_student_carries_it_on(target: toy.ToyTarget, tmp_path: Path) -> None:
    from seed_distill.api import load_init

    run = RunConfig(steps=4, batch=16, checkpoint_every=4, ema=0.0)
    distill(target, tmp_path / "cfg", recipe_stages("cfg", None), Options(steps=2, lr=1e-2), run)
    first = target.students[-1]["net"].state_dict()
    start = load_init(target, tmp_path / "cfg")  # a run directory: its student/
    assert target.embeds_guidance(start)
    # at a zero learning rate a TSCD run exports its start: the cfg student, guidance embedding included
    frozen = Options(steps=2, lr=0.0)
    distill(target, tmp_path / "tscd", recipe_stages("tscd", None), frozen, run, init=start)
    carried = target.students[-1]["net"].state_dict()
    assert carried.keys() == first.keys()
    assert all(torch.equal(first[k], carried[k]) for k in first)
    distill(target, tmp_path / "fresh", recipe_stages("tscd", None), frozen, run)  # no init: the teacher
    teacher = target.teacher.state_dict()
    assert all(torch.equal(v, teacher[k]) for k, v in target.students[-1]["net"].state_dict().items())
    assert not torch.equal(first["inp.weight"], teacher["inp.weight"])  # so the first check could fail
    with pytest.raises(UsageError, match="--init .*no such student directory"):
        load_init(target, tmp_path / "missing")


def test_existing_run_directory_needs_resume_or_force(tmp_path: Path) -> None:
    (tmp_path / "log.jsonl").write_text("{}\n")
    with pytest.raises(UsageError, match="--resume to continue it or --force"):
        prepare_out(tmp_path, resume=False, force=False)
    prepare_out(tmp_path, resume=False, force=True)
    assert not (tmp_path / "log.jsonl").exists()


def test_method_that_does_not_fit_the_backbone_is_refused(target: toy.ToyTarget) -> None:
    from seed_distill.api import check_fit

    class NoFeatures(toy.ToyTarget):
        def feature_dims(self) -> list[int]:
            raise NotImplementedError

    blind = NoFeatures(target.teacher, target.mix)
    check_fit(blind, "dmd2", recipe_stages("dmd2", None), "toy")  # needs no features
    with pytest.raises(UsageError, match="method 'adp' needs the teacher's features.*'toy' does not expose"):
        check_fit(blind, "dmdx", recipe_stages(None, "dmdx"), "toy")


def test_a_diverging_loss_stops_the_run_with_one_line(target: toy.ToyTarget, tmp_path: Path) -> None:
    from seed_distill.trainer import DivergedError

    class Broken(toy.ToyTarget):
        def sample_noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
            return torch.full((n, 2), float("nan"))

    broken = Broken(target.teacher, target.mix)
    with pytest.raises(DivergedError, match="loss of 'dmd2' is nan at step 1; lower the learning rate"):
        distill(broken, tmp_path, recipe_stages("dmd2", None), Options(steps=1), RunConfig(steps=5, batch=8))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "-1"], "--lr must be > 0, got -1.0"),
        (["--critic-lr", "0"], "--critic-lr must be > 0, got 0.0"),
        (["--ema", "2"], r"--ema must be in \[0, 1\)"),
        (["--teacher-steps", "0"], "--teacher-steps must be >= 1, got 0"),
        (["--checkpoint-every", "-3"], "--checkpoint-every must be >= 1"),
        (["--critic-warmup", "-1"], "--critic-warmup must be >= 0"),
        (["--guidance", "-1"], "--guidance must be >= 0"),
        (["--steps", "0"], "--steps must be >= 1, got 0"),
        (["--nproc", "0"], "--nproc must be >= 1"),
        # a loss option the run's stages do not read had been ignored without a word
        (["--gan", "0.01"], "--gan is read by dmd2 with --data only; 'cfg' would ignore it"),
        (["--pixel", "0.3"], "--pixel is read by adp only"),
        (["--r1", "1"], "--r1 is read by adm and apt only"),
        (["--r2", "1"], "--r2 is read by apt only"),
    ],
)
def test_bad_numbers_and_unread_options_are_one_line_before_the_run_starts(
    tmp_path: Path, args: list[str], message: str
) -> None:
    # they had reached Adam (a traceback), a division by zero after setup, or trained on (--ema 2)
    from typer.testing import CliRunner

    from seed_cli.main import create_app

    out = tmp_path / "run"
    result = CliRunner().invoke(
        create_app(), ["distill", "-m", "seedream-tiny-random", "--method", "cfg", "-o", str(out), *args]
    )
    assert result.exit_code == 2 and re.search(message, result.output), result.output
    assert "Traceback" not in result.output and not out.exists()


def test_a_pair_bank_that_is_a_file_is_refused_before_teacher_samples(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from seed_cli.main import create_app

    (tmp_path / "p.txt").write_text("a red circle\n")
    (tmp_path / "bank.png").write_bytes(b"x")
    args = ["distill", "-m", "seedream-tiny-random", "--method", "kd", "-o", str(tmp_path / "run")]
    args += ["--prompts", str(tmp_path / "p.txt"), "--pairs", str(tmp_path / "bank.png")]
    result = CliRunner().invoke(create_app(), args)
    assert result.exit_code == 2 and "bank.png is a file; give a folder" in result.output, result.output


def test_a_student_can_be_written_as_its_difference_from_the_teacher(tmp_path: Path) -> None:
    """`seed distill --delta-bits 4`: the student's DiT lands as a delta file of the teacher's (a quarter of
    the float16 bytes), which `--accel` loads beside that teacher; a teacher with no file is refused first."""
    from typer.testing import CliRunner

    from seed_cli.main import create_app
    from seed_core.delta import delta_record
    from seed_core.pipeline import load
    from seed_core.requests import GenerateRequest

    teacher = tmp_path / "teacher"
    load("seedream-tiny-random").save_pretrained(teacher)
    (tmp_path / "p.txt").write_text("a red circle\n")
    args = ["distill", "-m", str(teacher), "--method", "cfg", "--student-steps", "2", "--steps", "2",
            "--batch", "1", "--prompts", str(tmp_path / "p.txt"), "--delta-bits", "4"]  # fmt: skip
    result = CliRunner().invoke(create_app(), [*args, "-o", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    student = tmp_path / "run" / "student" / "dit.safetensors"
    assert delta_record(student) is not None
    assert student.stat().st_size < 0.45 * (teacher / "dit.safetensors").stat().st_size
    pipeline = load(str(teacher), accelerators=[f"cfg:path={tmp_path / 'run'},steps=2"])
    assert pipeline.run(GenerateRequest("a red circle", seed=0)).images[0].size == (64, 64)
    args[2] = "seedream-tiny-random"  # built in code: no dit.safetensors to be the difference from
    refused = CliRunner().invoke(create_app(), [*args, "-o", str(tmp_path / "other")])
    assert refused.exit_code == 2 and "has no dit.safetensors" in refused.output, refused.output
    assert not (tmp_path / "other").exists()
