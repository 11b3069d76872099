"""`seed distill` on a tiny Seedream directory end to end, then `seed generate --accel METHOD:path=RUN`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seed_core.images import read_metadata
from seed_core.specs import LoadOptions


@pytest.fixture
def teacher(run, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    from seed_dit.pipeline import random_pipeline

    path = tmp_path / "teacher"
    random_pipeline(run.registry.models.get("seedream"), LoadOptions()).save_pretrained(path, dtype="float32")
    (path / "prompts.txt").write_text("a red circle\na blue square left of a green star\n")
    return path


def test_distill_then_generate_with_the_student(run, teacher: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    args = ["distill", "-m", str(teacher), "--method", "adm", "--steps", "3", "--student-steps", "2"]
    result = run(*args, "--batch", "2", "--ratio", "2", "-o", str(out))
    assert result.exit_code == 0, result.output
    info = json.loads((out / "student" / "student.json").read_text())
    assert info["steps"] == 2 and info["name"] == "adm" and info["guidance"] == 1.0
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3]

    again = run(*args, "-o", str(out))
    assert again.exit_code == 2 and "--resume to continue it or --force" in again.output

    image = tmp_path / "x.png"
    result = run(
        "generate", "a red circle", "-m", str(teacher), "--accel", f"adm:path={out},steps=2", "-o", str(image)
    )
    assert result.exit_code == 0, result.output
    meta = read_metadata(image)
    assert meta["settings"]["steps"] == 2
    assert meta["accelerators"][0]["name"] == "adm"

    # a student composes with an attention accelerator (PARO, calibrated on the teacher)
    assert (
        run(
            "calibrate", "-m", str(teacher), "--size", "64x64", "-p", "a red circle", "--steps", "2"
        ).exit_code
        == 0
    )
    both = ["--accel", "paro:density=0.5", "--accel", f"adm:path={out},steps=2"]
    result = run("generate", "a red circle", "-m", str(teacher), *both, "-o", str(image), "-f")
    assert result.exit_code == 0, result.output
    assert [a["name"] for a in read_metadata(image)["accelerators"]] == ["adm", "paro"]  # steps first

    # a plan calibrated on the student itself, kept apart from the teacher's
    calib = ["calibrate", "-m", str(teacher), "--size", "64x64", "-p", "a red circle", "--steps", "2"]
    student = ["--with", f"adm:path={out},steps=2"]
    refused = run(*calib, *student)
    assert refused.exit_code == 2 and "give --out DIR" in refused.output
    assert run(*calib, *student, "--out", str(tmp_path / "plan")).exit_code == 0
    own = ["--accel", f"paro:plan={tmp_path / 'plan'}", "--accel", f"adm:path={out},steps=2"]
    result = run("generate", "a red circle", "-m", str(teacher), *own, "-o", str(image), "-f")
    assert result.exit_code == 0, result.output

    wrong = run(
        "generate", "x", "-m", str(teacher), "--accel", f"dmd2:path={out},steps=2", "-o", str(image), "-f"
    )
    assert wrong.exit_code != 0 and "was made by 'adm'; use --accel adm" in wrong.output
    steps = run("generate", "x", "-m", str(teacher), "--accel", f"adm:path={out}", "-o", str(image), "-f")
    assert "distilled for 2 steps; use --accel adm:steps=2" in steps.output


def test_missing_student_names_the_command(run, teacher: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run(
        "generate", "x", "-m", str(teacher), "--accel", "dmd2:steps=4", "-o", str(tmp_path / "y.png")
    )
    assert result.exit_code != 0
    assert "no student in" in result.output and "seed distill --teacher" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_registered_method_runs_from_python(run, teacher: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec = run.registry.distill_methods.get("dmd2")
    path = spec.run(str(teacher), tmp_path / "r", steps=2, student_steps=1, batch=2, ratio=1)
    assert path is not None and json.loads((path / "student.json").read_text())["steps"] == 1
    with pytest.raises(Exception, match="unknown distillation option"):
        spec.run(str(teacher), tmp_path / "s", stepz=2)


def test_apt_on_real_data_and_a_reward_term(run, teacher: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from seed_mini.train import write_dataset

    data = tmp_path / "data"
    write_dataset(data, 6, size=64)
    assert len((data / "metadata.jsonl").read_text().splitlines()) == 6
    out = tmp_path / "apt"
    base = ["distill", "-m", str(teacher), "--steps", "2", "--student-steps", "1", "--batch", "2"]
    result = run(*base, "--method", "apt", "--data", str(data), "--ratio", "1", "--r1", "1", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads((out / "student" / "student.json").read_text())["name"] == "apt"

    # the one-step Hyper finish: ADP with the shapes world's reward model, whose mean is logged
    out = tmp_path / "hyper1"
    result = run(*base, "--steps", "4", "--recipe", "hyper", "--reward", "seed-mini", "-o", str(out))
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["method"] for e in log][-1] == "adp" and "reward" in log[-1]

    no_data = run(*base, "--method", "apt", "-o", str(tmp_path / "x"))
    assert no_data.exit_code == 2 and "give --data DIR" in no_data.output
    bad_data = run(*base, "--method", "apt", "--data", str(tmp_path / "nowhere"), "-o", str(tmp_path / "y"))
    assert bad_data.exit_code == 2 and "no such directory" in bad_data.output
    unknown = run(*base, "--method", "adp", "--reward", "clip-score", "-o", str(tmp_path / "z"))
    assert unknown.exit_code != 0 and "Unknown reward model 'clip-score'" in unknown.output
    weight = run(*base, "--method", "adp", "--reward-weight", "0.5", "-o", str(tmp_path / "w"))
    assert weight.exit_code == 2 and "--reward NAME" in weight.output
    unused = run(*base, "--method", "adm", "--data", str(data), "-o", str(tmp_path / "v"))
    assert unused.exit_code == 2 and "apt and dmd2" in unused.output

    # DMD2 with its GAN term on the same real data
    out = tmp_path / "dmd2"
    result = run(*base, "--method", "dmd2", "--data", str(data), "--ratio", "1", "-o", str(out))
    assert result.exit_code == 0, result.output


def test_distill_on_edits_then_edit_with_the_student(run, teacher: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The shapes world's edit sources (every operation in turn) feed `seed distill --edits`; the student
    edits through `seed edit --accel`; a method that cannot read edits gets one line."""
    from seed_mini.train import write_edits

    edits = tmp_path / "edits"
    assert write_edits(edits, 14, size=64) == 14
    lines = [json.loads(line) for line in (edits / "metadata.jsonl").read_text().splitlines()]
    assert [e["op"] for e in lines[:7]] == [e["op"] for e in lines[7:]] and len({e["op"] for e in lines}) == 7
    assert all((edits / e["file_name"]).is_file() and e["text"] for e in lines)

    out = tmp_path / "run"
    base = ["distill", "-m", str(teacher), "--steps", "2", "--student-steps", "2", "--batch", "2"]
    tscd = [*base, "--method", "tscd", "--teacher-steps", "4", "--edits", str(edits)]
    result = run(*tscd, "--edit-share", "1", "-o", str(out))  # every micro-batch an edit
    assert result.exit_code == 0, result.output
    info = json.loads((out / "student" / "student.json").read_text())
    assert info["options"]["edit_share"] == 1.0 and info["edits"] == str(edits)
    result = run(*tscd, "--steps", "1", "-o", str(tmp_path / "default"))
    assert result.exit_code == 0, result.output
    default = json.loads((tmp_path / "default" / "student" / "student.json").read_text())
    assert default["options"]["edit_share"] == 0.25

    image = tmp_path / "edited.png"
    source = edits / lines[0]["file_name"]
    accel = ["--accel", f"tscd:path={out},steps=2"]
    result = run("edit", str(source), lines[0]["text"], "-m", str(teacher), *accel, "-o", str(image))
    assert result.exit_code == 0, result.output
    assert read_metadata(image)["settings"]["steps"] == 2

    refused = run(*base, "--method", "adm", "--edits", str(edits), "-o", str(tmp_path / "x"))
    assert refused.exit_code == 2 and "--edits is read by cfg and tscd only" in refused.output
    missing = run(*base, "--method", "tscd", "--edits", str(tmp_path / "nowhere"), "-o", str(tmp_path / "y"))
    assert missing.exit_code == 2 and "--edits" in missing.output and "no such directory" in missing.output


def test_kd_on_a_pair_bank_end_to_end(run, teacher: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`--method kd --pairs DIR` makes the bank, trains from it, and a second run reuses it; a bank made
    with other teacher steps is refused with one line naming the option."""
    bank = tmp_path / "bank"
    args = ["distill", "-m", str(teacher), "--method", "kd", "--steps", "2", "--student-steps", "1"]
    common = [*args, "--batch", "2", "--teacher-steps", "2", "--pairs", str(bank), "--pair-count", "5"]
    result = run(*common, "-o", str(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "a" / "student" / "student.json").read_text())
    assert info["name"] == "kd" and info["pairs"] == str(bank)
    made = (bank / "pairs.safetensors").stat().st_mtime_ns
    assert run(*common, "-o", str(tmp_path / "b")).exit_code == 0
    assert (bank / "pairs.safetensors").stat().st_mtime_ns == made  # reused, not made again
    other = [*args, "--batch", "2", "--teacher-steps", "4", "--pairs", str(bank), "--pair-count", "5"]
    refused = run(*other, "-o", str(tmp_path / "c"))
    assert refused.exit_code == 2 and "teacher_steps=2, this run's is 4" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
