"""What the plugin calls: `seed distill` (one process or under torchrun) and the step accelerators."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seed_core.errors import AcceleratorError, UsageError
from seed_core.files import atomic_write_bytes, read_prompts
from seed_core.pipeline import Pipeline, load
from seed_core.requests import parse_size
from seed_distill.methods import METHODS, Options
from seed_distill.trainer import (
    CHECKPOINT,
    LOG,
    RunConfig,
    World,
    distill,
    init_world,
    leave_world,
    recipe_stages,
)

#: methods whose critics are heads on the teacher's features
NEEDS_FEATURES = ("adm", "adp", "apt")


def _strip_nproc(argv: Sequence[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if arg.startswith("--nproc="):
            continue
        out.append(arg)
    return out


def relaunch(nproc: int, argv: Sequence[str]) -> int:
    """Run this `seed distill` again under torchrun with `nproc` processes; returns its exit code. A rank
    that fails prints its own error (rank 0's, for the user errors every rank meets); torchrun's report
    of the failure (a traceback) becomes one line naming the rank."""
    import logging

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    for name in (
        "torch.distributed.elastic.multiprocessing.api",
        "torch.distributed.elastic.agent.server.api",
    ):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # the failure is reported below, once
    args = parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "seed_cli", *_strip_nproc(argv)])
    try:
        run(args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        how = f"exit code {failure.exitcode}" if failure.exitcode >= 0 else f"signal {-failure.exitcode}"
        print(f"Error: rank {rank} of {nproc} failed first ({how})", file=sys.stderr)
        return failure.exitcode if failure.exitcode > 0 else 1
    return 0


def prepare_out(out: Path, resume: bool, force: bool) -> None:
    """Refuse to mix runs: an existing run directory needs --resume (continue) or --force (start over)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a directory")
    if out.is_dir() and any(out.iterdir()) and not (resume or force):
        raise UsageError(
            f"--out {out} already holds a run; pass --resume to continue it or --force to start over"
        )
    if force and not resume:
        for name in (CHECKPOINT, LOG):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "student", ignore_errors=True)


#: methods that train on `--edits` (regression to the teacher's guided trajectories)
EDIT_METHODS = ("cfg", "tscd")


def _offers(target: Any, method: str) -> bool:
    from seed_core.distill import DistillTarget

    return getattr(type(target), method) is not getattr(DistillTarget, method)


def check_fit(
    target: Any,
    name: str,
    stages: Sequence[Any],
    teacher: str,
    *,
    reward: bool = False,
    data: bool = False,
    edits: bool = False,
    mse: bool = False,
) -> None:
    """A method that needs what the backbone does not offer is refused with the reason."""
    if reward and not (_offers(target, "decode") and _offers(target, "prompts")):
        raise UsageError(f"a reward term needs decoded images and their prompts; '{teacher}' offers neither")
    # an edit's conditions must survive repetition (tscd's segment starts), not be re-made from the text
    if edits and not all(_offers(target, m) for m in ("edit_conditions", "encode", "repeat_conditions")):
        raise UsageError(f"--edits: '{teacher}' does not take instruction edits for distillation")
    wrong = [s.method for s in stages if s.method not in EDIT_METHODS]
    if edits and wrong:
        # the others fit a fake score or a discriminator to conditional samples; an edit's velocity is
        # guided by the source image even at text scale 1, so they would learn the wrong thing from it
        methods = " and ".join(EDIT_METHODS)
        raise UsageError(
            f"--edits is read by {methods} only (they follow the teacher's trajectories); "
            f"'{name}' has a {wrong[0]} stage"
        )
    if data and not any(s.method in ("apt", "dmd2") for s in stages):
        raise UsageError("--data is read by apt and dmd2 (its GAN term) only; drop it or use one of them")
    if mse and not any(s.method in ("adp", "dmd2") for s in stages):
        raise UsageError("--mse is read by adp and dmd2 only; drop it or pick one of them")
    if any(s.method == "apt" for s in stages):
        if not data:
            raise UsageError("method 'apt' trains against real data: give --data DIR (images + captions)")
        if not (_offers(target, "encode") and _offers(target, "conditions")):
            raise UsageError(f"method 'apt' needs to encode real images and captions; '{teacher}' cannot")
    for stage in stages:
        if stage.method in NEEDS_FEATURES:
            try:
                target.feature_dims()
            except NotImplementedError:
                raise UsageError(
                    f"method '{stage.method}' needs the teacher's features for its discriminator; "
                    f"'{teacher}' does not expose them"
                ) from None
        if METHODS[stage.method].guidance_embed:
            try:
                target.make_student(guidance_embed=True)
            except NotImplementedError:
                raise UsageError(
                    f"method '{stage.method}' needs a student that embeds the guidance scale; "
                    f"'{teacher}' cannot build one"
                ) from None


def distill_model(
    teacher: str | Pipeline,
    out: Path,
    *,
    method: str | None = None,
    recipe: str | None = None,
    prompts: Sequence[str] | None = None,
    size: tuple[int, int] | None = None,
    options: Options | None = None,
    run: RunConfig | None = None,
    resume: bool = False,
    device: str = "cpu",
    world: World | None = None,
    progress: Any = None,
    data: Path | None = None,
    init: Path | None = None,
    edits: Path | None = None,
    pairs: Path | None = None,
    pair_count: int = 4096,
    pair_precision: str = "fp32",
    pair_progress: Any = None,
) -> Path:
    """Distill `teacher` (a name, a directory or a loaded pipeline) into `out / "student"`; `init`: the
    student directory (or run directory) to start from instead of the teacher; `edits`: a folder of edit
    sources and instructions (the image-folder layout of `data`), a share `options.edit_share` of the
    micro-batches; `pairs`: a bank of teacher ODE pairs (seed_distill.pairs), made there first with
    `pair_count` pairs when it has fewer, that the methods drawing teacher ODE pairs (kd, adp, dmd2 with
    `mse`) read."""
    recipe_stages(method, recipe)  # refuse a bad method / recipe before loading the teacher
    pipeline = load(teacher, device=device) if isinstance(teacher, str) else teacher
    name = teacher if isinstance(teacher, str) else pipeline.spec.name
    if type(pipeline).distill_target is Pipeline.distill_target:
        pipeline.distill_target([])  # raises: the model does not implement the protocol
    if prompts is None:
        source = Path(pipeline.source or "") / "prompts.txt"
        if not source.is_file():
            raise UsageError(
                f"teacher '{name}' ships no prompts.txt; give training prompts with --prompts FILE"
            )
        prompts = read_prompts(source)
    target = pipeline.distill_target(list(prompts), size)
    options = options or Options()
    stages = recipe_stages(method, recipe, options.steps)
    check_fit(
        target,
        method or recipe or "",
        stages,
        name,
        reward=options.extra.get("reward_name") is not None,
        data=data is not None,
        edits=edits is not None,
        mse=options.mse > 0,
    )
    if edits is None and options.edit_share > 0:
        raise UsageError("--edit-share needs edit sources: --edits DIR (images + metadata.jsonl)")
    if not 0.0 <= options.edit_share <= 1.0:
        raise UsageError(f"--edit-share is a share of the micro-batches, 0 to 1; got {options.edit_share}")
    weights = {
        "--mse": options.mse,
        "--pixel": options.pixel,
        "--r1": options.r1,
        "--r2": options.r2,
        "--gan": options.gan,
    }
    negative = [f"{flag} {value}" for flag, value in weights.items() if value < 0]
    if negative:
        raise UsageError(f"loss weights are >= 0; got {', '.join(negative)}")
    if options.extra.get("reward_name") is not None:
        from seed_core.registry import get_registry

        spec = get_registry().reward_models.get(options.extra["reward_name"])
        model = spec.build(device)
        model.margin = spec.margin if options.reward_margin is None else options.reward_margin
        options.extra["reward"] = model
    for key, folder in (("data", data), ("edits", edits)):  # encoded once, kept in memory for the run
        if folder is not None:
            from seed_distill.data import encode_folder

            options.extra[key] = encode_folder(target, folder, size or pipeline.default_size, flag=f"--{key}")
    if edits is not None:
        options.extra["edits_dir"] = edits  # recorded in the student's info
    run = run or RunConfig()
    if pairs is not None:
        bank = load_pairs(
            target, Path(pairs), pair_count, name, options, pair_precision, run, world, pair_progress
        )
        options.extra["pairs"], options.extra["pairs_dir"] = bank, pairs
    options.extra["name"] = method or recipe
    start = None
    if init is not None:
        start = load_init(target, Path(init))
        options.extra["init"] = init
        options.extra["carried"] = carried_settings(Path(init))
    student = distill(
        target,
        Path(out),
        stages,
        options,
        run,
        resume=resume,
        teacher=name,
        world=world,
        progress=progress,
        init=start,
    )
    record = {"teacher": name, "name": method or recipe, "stages": [s.__dict__ for s in stages]}
    if (world or World()).main:
        atomic_write_bytes(
            Path(out) / "recipe.json", (json.dumps(record, indent=2) + "\n").encode(), force=True
        )
    return student


def load_pairs(
    target: Any,
    directory: Path,
    count: int,
    teacher: str,
    options: Options,
    precision: str,
    run: RunConfig,
    world: World | None,
    progress: Any = None,
) -> Any:
    """The pair bank of `--pairs`: made (or completed) on one process, read by every rank."""
    from seed_distill.pairs import FILE, pair_bank

    if Path(directory).exists() and not Path(directory).is_dir():  # found at the first save, minutes in
        raise UsageError(f"--pairs {directory} is a file; give a folder for the bank of pairs")
    if not _offers(target, "conditions") or not _offers(target, "prompts"):
        raise UsageError(
            f"--pairs: '{teacher}' cannot give the prompts of its samples, so it cannot keep a bank"
        )
    guidance = options.guidance if options.guidance is not None else target.default_guidance
    world = world or World()
    if world.size > 1 and not (Path(directory) / FILE).is_file():
        raise UsageError(
            f"--pairs {directory}: make the bank with one process first (the same command without "
            "--nproc), then run it on several"
        )
    return pair_bank(
        target,
        Path(directory),
        count,
        teacher=teacher,
        teacher_steps=options.teacher_steps,
        guidance=guidance,
        seed=run.seed,
        precision=precision,
        progress=progress,
    )


def init_directory(init: Path) -> Path:
    """The student directory `--init` names: itself, or a run directory's `student/`."""
    return init / "student" if (init / "student").is_dir() else init


def load_init(target: Any, init: Path) -> Any:
    """The student `--init` names (a student directory or a run directory holding `student/`)."""
    directory = init_directory(init)
    if not directory.is_dir():
        raise UsageError(f"--init {init}: no such student directory (a `seed distill` run or its student/)")
    try:
        return target.load_student(directory)
    except NotImplementedError as exc:  # mismatched or corrupt weights raise their own one-line errors
        raise UsageError(f"--init: {exc}") from None


#: sampling settings of an `--init` student that its continuation keeps (set for that student, e.g. the edit
#: image guidance it was measured best at; a new run has no better value)
CARRIED = ("image_guidance",)


def carried_settings(init: Path) -> dict[str, Any]:
    """The `CARRIED` settings in the student.json of the student `--init` names (none without one)."""
    try:
        info = json.loads((init_directory(init) / "student.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: info[k] for k in CARRIED if isinstance(info, dict) and k in info}


#: `seed distill`'s defaults, for calls from Python (`DistillMethodSpec.run(teacher, output_dir, **options)`)
DEFAULTS: dict[str, Any] = {
    "recipe": None,
    "steps": 1000,
    "student_steps": 4,
    "batch": 8,
    "shards": 1,
    "lr": 1e-5,
    "critic_lr": None,
    "ratio": 5,
    "guidance": None,
    "teacher_steps": 8,
    "size": None,
    "prompts": None,
    "ema": 0.99,
    "checkpoint_every": 100,
    "minutes": None,
    "seed": 0,
    "device": "cpu",
    "resume": False,
    "force": False,
    "fsdp": False,
    "data": None,
    "init": None,
    "edits": None,
    "edit_share": None,
    "tscd_target": "teacher",
    "tscd_points": "any",
    "critic_warmup": 0,
    "gan": None,
    "reward": None,
    "reward_weight": -1.0,
    "reward_margin": None,
    "pixel": None,
    "mse": 0.0,
    "r1": 0.0,
    "r2": 0.0,
    "pairs": None,
    "pair_count": 4096,
    "pair_precision": "fp32",
}


def run_method(method: str, teacher: str, output_dir: Path, **options: Any) -> Path | None:
    """A registered method's `run`: `seed distill --method METHOD` with `options` (the command's names)."""
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise UsageError(f"unknown distillation option(s): {', '.join(sorted(unknown))}")
    return run_command(teacher=teacher, out=Path(output_dir), method=method, **{**DEFAULTS, **options})


def check_numbers(kw: dict[str, Any]) -> None:
    """One UsageError naming the first numeric option out of its range."""
    rules = [
        ("--steps", kw["steps"], kw["steps"] >= 1, ">= 1"),
        ("--batch", kw["batch"], kw["batch"] >= 1, ">= 1"),
        ("--shards", kw["shards"], kw["shards"] >= 1, ">= 1"),
        ("--ratio", kw["ratio"], kw["ratio"] >= 1, ">= 1"),
        ("--student-steps", kw["student_steps"], kw["student_steps"] >= 1, ">= 1"),
        ("--teacher-steps", kw["teacher_steps"], kw["teacher_steps"] >= 1, ">= 1"),
        ("--checkpoint-every", kw["checkpoint_every"], kw["checkpoint_every"] >= 1, ">= 1 (steps)"),
        ("--critic-warmup", kw["critic_warmup"], kw["critic_warmup"] >= 0, ">= 0 (steps)"),
        ("--lr", kw["lr"], kw["lr"] > 0, "> 0"),
        ("--critic-lr", kw["critic_lr"], kw["critic_lr"] is None or kw["critic_lr"] > 0, "> 0"),
        ("--ema", kw["ema"], 0 <= kw["ema"] < 1, "in [0, 1) (0: the raw weights)"),
        ("--guidance", kw["guidance"], kw["guidance"] is None or kw["guidance"] >= 0, ">= 0"),
        ("--minutes", kw["minutes"], kw["minutes"] is None or kw["minutes"] > 0, "> 0"),
    ]
    for flag, value, ok, want in rules:
        if not ok:
            raise UsageError(f"{flag} must be {want}, got {value}")


def check_read(kw: dict[str, Any]) -> None:
    """One UsageError for a loss option that no stage of the run reads (it would be ignored)."""
    methods = {s.method for s in recipe_stages(kw["method"], kw["recipe"], kw["student_steps"])}
    run = kw["method"] or kw["recipe"]
    rules = [
        ("--gan", kw["gan"] is not None, "dmd2" in methods and kw["data"] is not None, "dmd2 with --data"),
        ("--pixel", kw["pixel"] is not None, "adp" in methods, "adp"),
        ("--r1", kw["r1"] > 0, bool(methods & {"adm", "apt"}), "adm and apt"),
        ("--r2", kw["r2"] > 0, "apt" in methods, "apt"),
    ]
    for flag, given, read, readers in rules:
        if given and not read:
            raise UsageError(f"{flag} is read by {readers} only; '{run}' would ignore it: drop it")


def run_command(**kw: Any) -> Path | None:
    """`seed distill` after its options are parsed (rank 0 prints progress)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from seed_core.console import progress_bar

    out: Path = kw["out"]
    if kw["method"] is not None and kw["method"] not in METHODS:  # another plugin's method, or a typo
        from seed_core.registry import get_registry

        spec = get_registry().distill_methods.get(kw["method"])
        rest = {k: v for k, v in kw.items() if k not in ("teacher", "out", "method")}
        return spec.run(teacher=kw["teacher"], output_dir=out, **rest)
    check_numbers(kw)  # before the run directory is touched
    check_read(kw)
    prepare_out(out, kw["resume"], kw["force"])
    world = init_world()
    prompts = read_prompts(kw["prompts"]) if kw["prompts"] is not None else None
    reward_weight = kw["reward_weight"] if kw["reward_weight"] >= 0 else (0.1 if kw["reward"] else 0.0)
    if reward_weight > 0 and kw["reward"] is None:
        raise UsageError("--reward-weight needs a reward model: --reward NAME (see seed distill --list)")
    options = Options(
        steps=kw["student_steps"],
        guidance=kw["guidance"],
        lr=kw["lr"],
        fake_lr=kw["critic_lr"],
        ratio=kw["ratio"],
        teacher_steps=kw["teacher_steps"],
        tscd_target=kw["tscd_target"],
        tscd_points=kw["tscd_points"],
        critic_warmup=kw["critic_warmup"],
        pixel=Options.pixel if kw["pixel"] is None else kw["pixel"],
        mse=kw["mse"],
        r1=kw["r1"],
        r2=kw["r2"],
        gan=Options.gan if kw["gan"] is None else kw["gan"],
        reward_weight=reward_weight,
        reward_margin=kw["reward_margin"],
        edit_share=kw["edit_share"] if kw["edit_share"] is not None else (0.25 if kw["edits"] else 0.0),
    )
    if kw["reward"] is not None:
        options.extra["reward_name"] = kw["reward"]
    run = RunConfig(
        steps=kw["steps"],
        batch=kw["batch"],
        shards=kw["shards"],
        seed=kw["seed"],
        ema=kw["ema"],
        checkpoint_every=kw["checkpoint_every"],
        fsdp=kw["fsdp"],
        minutes=kw["minutes"],
    )
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with progress_bar(*columns, console=console, disable=not world.main) as bar:
        task = bar.add_task("distilling", total=run.steps)

        def pair_tick(made: int, total: int) -> None:
            bar.update(task, completed=made, total=total, description="teacher ODE pairs")

        def tick(step: int, total: int, losses: dict[str, float]) -> None:
            text = " ".join(f"{k} {v:.4f}" for k, v in losses.items())
            # total: --minutes re-plans the step count
            bar.update(task, completed=step, total=total, description=f"distilling {text}")

        try:
            path = distill_model(
                kw["teacher"],
                out,
                method=kw["method"],
                recipe=kw["recipe"],
                prompts=prompts,
                size=parse_size(kw["size"]) if kw["size"] else None,
                options=options,
                run=run,
                resume=kw["resume"],
                device=kw["device"],
                world=world,
                progress=tick,
                data=kw["data"],
                init=kw["init"],
                edits=kw["edits"],
                pairs=kw["pairs"],
                pair_count=kw["pair_count"],
                pair_precision=kw["pair_precision"],
                pair_progress=pair_tick,
            )
        except BaseException:
            leave_world(world, failed=True)
            raise
        leave_world(world)
    return path if world.main else None


def use_student(pipeline: Pipeline, name: str, steps: int, path: str | None) -> Pipeline:
    """The step accelerator: swap the pipeline's backbone for a student made by `seed distill`."""
    model = pipeline.spec.name if pipeline.source == pipeline.spec.weights else pipeline.source
    if steps < 1:
        raise AcceleratorError(f"{name}: steps={steps}; a student samples in 1 or more steps")
    flag = "--recipe" if name in ("dmdx", "hyper") else "--method"
    make = (
        f"make one with `seed distill --teacher {model} {flag} {name} --student-steps {steps} --out DIR` "
        f"and use `--accel {name}:path=DIR`"
    )
    if not path and not pipeline.source:  # a model built in code has no folder for shipped students
        raise AcceleratorError(f"{name}: model '{model}' ships no students; {make}")
    directory = Path(path) if path else Path(pipeline.source) / "students" / f"{name}-{steps}"
    if (directory / "student").is_dir():  # a run directory
        directory = directory / "student"
    if not directory.is_dir():
        raise AcceleratorError(f"{name}: no student in {directory}; {make}")
    file = directory / "student.json"
    try:
        info = json.loads(file.read_text()) if file.exists() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AcceleratorError(
            f"{file}: not valid JSON ({exc}); remake the student with seed distill"
        ) from None
    if not isinstance(info, dict):
        raise AcceleratorError(f"{file}: expected a JSON object (steps, shift, guidance, ...)")
    made_by = info.get("name")
    if made_by and made_by != name:
        raise AcceleratorError(
            f"{name}: the student in {directory} was made by '{made_by}'; use --accel {made_by}"
        )
    made_for = info.get("steps", steps)
    if not isinstance(made_for, int) or made_for < 1:
        raise AcceleratorError(f"{file}: steps must be a whole number >= 1, got {made_for!r}")
    if made_for != steps:
        raise AcceleratorError(
            f"{name}: the student in {directory} was distilled for {made_for} steps; "
            f"use --accel {name}:steps={made_for}"
        )
    pipeline.load_student(directory)
    pipeline.student_steps = steps  # what it was distilled for: `seed generate --steps` other warns
    return pipeline
