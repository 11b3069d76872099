"""seed-distill's plugin: the distillation methods, the step accelerators that use their students
(`--accel adm:steps=4`) and `seed distill`. No torch at import: `seed --help` imports this module."""

# No `from __future__ import annotations`: typer reads the command's annotations at run time.
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from seed_core import hookimpl
from seed_core.specs import AcceleratorKind, AcceleratorOption, AcceleratorSpec, DistillMethodSpec

#: name -> one line; methods first, then recipes (a student of either is used the same way)
DESCRIPTIONS = {
    "cfg": "guidance distillation into a student that embeds the guidance scale",
    "tscd": "trajectory-segmented consistency distillation (Hyper-SD)",
    "kd": "regression on teacher ODE pairs from the student's own chain (knowledge distillation; --pairs)",
    "adp": "adversarial pre-training on teacher ODE pairs (DMDX stage 1)",
    "dmd2": "distribution matching with a learned fake score, TTUR, backward simulation; GAN with --data",
    "adm": "adversarial distribution matching: a discriminator on the real / fake score steps",
    "apt": "adversarial post-training against real data (--data): RpGAN, approximate R1/R2, feature matching",
    "dmdx": "recipe: adp then adm",
    "hyper": "recipe: cfg, then tscd, then adm (Hyper-Bagel); for 1 step, an adp + reward finish",
}
RECIPES = ("dmdx", "hyper")


def _run_method(name: str) -> Callable[..., Any]:
    def run(teacher: str, output_dir: Path, **options: Any) -> Any:
        from seed_distill.api import run_method

        return run_method(name, teacher, output_dir, **options)

    return run


@hookimpl
def seed_register_distill_methods(register: Callable[[DistillMethodSpec], None]) -> None:
    for name, text in DESCRIPTIONS.items():
        if name not in RECIPES:
            register(DistillMethodSpec(name, _run_method(name), text))


def _use_student(name: str) -> Callable[..., Any]:
    def apply(pipeline: Any, steps: int = 4, path: str | None = None) -> Any:
        from seed_distill.api import use_student

        return use_student(pipeline, name, steps, path)

    return apply


@hookimpl
def seed_register_accelerators(register: Callable[[AcceleratorSpec], None]) -> None:
    for name, text in DESCRIPTIONS.items():
        register(
            AcceleratorSpec(
                name=name,
                kind=AcceleratorKind.STEPS,
                apply=_use_student(name),
                description=f"student of `seed distill`: {text}",
                options=(
                    AcceleratorOption("steps", int, 4, "the student's sampling steps"),
                    AcceleratorOption("path", str, None, "student directory [MODEL_DIR/students/NAME-STEPS]"),
                ),
            )
        )


@hookimpl
def seed_register_commands(app: Any) -> None:
    import typer

    @app.command("distill")
    def distill_command(
        teacher: Annotated[
            str | None,
            typer.Option("--teacher", "-m", help="Teacher model name or directory.", show_default=False),
        ] = None,
        out: Annotated[
            Path | None,
            typer.Option("--out", "-o", help="Run directory (checkpoint, log, student).", show_default=False),
        ] = None,
        method: Annotated[
            str | None,
            typer.Option(help=f"One method: {', '.join(n for n in DESCRIPTIONS if n not in RECIPES)}."),
        ] = None,
        recipe: Annotated[str | None, typer.Option(help=f"A recipe of stages: {', '.join(RECIPES)}.")] = None,
        steps: Annotated[int, typer.Option(help="Training steps (all stages together).")] = 1000,
        student_steps: Annotated[int, typer.Option(help="The student's sampling steps.")] = 4,
        batch: Annotated[int, typer.Option(help="Samples per micro-batch.")] = 8,
        shards: Annotated[
            int,
            typer.Option(help="Micro-batches per step over all processes (global batch = batch x shards)."),
        ] = 1,
        lr: Annotated[float, typer.Option(help="Student learning rate.")] = 1e-5,
        critic_lr: Annotated[
            float | None, typer.Option(help="Fake score / discriminator learning rate [= --lr].")
        ] = None,
        ratio: Annotated[int, typer.Option(help="Critic updates per student update (TTUR).")] = 5,
        critic_warmup: Annotated[
            int,
            typer.Option(
                help="Steps at the start of an adm, dmd2 or apt stage that train the critics only, "
                "before the student's first update."
            ),
        ] = 0,
        guidance: Annotated[
            float | None, typer.Option(help="The teacher's guidance scale [the model's default].")
        ] = None,
        teacher_steps: Annotated[
            int, typer.Option(help="Euler steps of teacher samples (ADP pairs, CFG and TSCD data).")
        ] = 8,
        size: Annotated[str | None, typer.Option(help="Training size WIDTHxHEIGHT [the model's].")] = None,
        prompts: Annotated[
            Path | None, typer.Option(help="Training prompts, one a line [MODEL_DIR/prompts.txt].")
        ] = None,
        ema: Annotated[float, typer.Option(help="EMA decay of the exported student (0: raw).")] = 0.99,
        checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 100,
        minutes: Annotated[
            float | None,
            typer.Option(
                help="End within this wall time: the step count (at most --steps) follows the measured "
                "rate, the stages keep their shares, the student is exported.",
                show_default=False,
            ),
        ] = None,
        seed: Annotated[int, typer.Option(help="Seed of every draw (repeatable runs).")] = 0,
        device: Annotated[str, typer.Option(help="torch device.")] = "cpu",
        nproc: Annotated[
            int, typer.Option(help="Processes on this machine (relaunches under torchrun).")
        ] = 1,
        fsdp: Annotated[
            bool, typer.Option("--fsdp", help="Shard the trained networks over the processes (FSDP2).")
        ] = False,
        resume: Annotated[bool, typer.Option(help="Continue from the run directory's checkpoint.")] = False,
        force: Annotated[
            bool, typer.Option("--force", "-f", help="Start over in an existing run directory.")
        ] = False,
        tscd_target: Annotated[
            str,
            typer.Option(
                help="tscd: where a jump must land: 'teacher' (the teacher's ODE to the segment's edge; "
                "--teacher-steps a multiple of --student-steps) or 'ema' (one teacher step, then the EMA "
                "student: Hyper-SD's consistency form)."
            ),
        ] = "teacher",
        tscd_points: Annotated[
            str,
            typer.Option(
                help="tscd with the teacher's target: where jumps start: 'any' (a random teacher step of "
                "a segment), 'starts' (every segment's start of each teacher trajectory: --student-steps "
                "pairs per trajectory) or 'own' (every segment's start of the student's own sampling "
                "chain, the teacher's ODE from there as the target)."
            ),
        ] = "any",
        init: Annotated[
            Path | None,
            typer.Option(
                help="Start the student from this student (a run directory or its student/) instead of "
                "the teacher: run a recipe's later stages, or more of one, as a new run (its edit image "
                "guidance carries over)."
            ),
        ] = None,
        data: Annotated[
            Path | None,
            typer.Option(help="Real data for apt and dmd2's GAN: images + metadata.jsonl (file_name, text)."),
        ] = None,
        edits: Annotated[
            Path | None,
            typer.Option(
                help="Instruction edits to train on beside the prompts, so the student keeps editing: "
                "source images + metadata.jsonl (file_name, text = the instruction); "
                "`python -m seed_mini.train edits --out DIR` renders one from the shapes world."
            ),
        ] = None,
        edit_share: Annotated[
            float | None,
            typer.Option(
                help="Share of micro-batches that are edits of --edits [0.25 with --edits].",
                show_default=False,
            ),
        ] = None,
        gan: Annotated[
            float | None,
            typer.Option(
                help="dmd2 with --data: weight of the generator's GAN term [3e-3].", show_default=False
            ),
        ] = None,
        reward: Annotated[
            str | None, typer.Option(help="Reward model for a ReFL term (see --list), e.g. seed-mini.")
        ] = None,
        reward_weight: Annotated[
            float, typer.Option(help="Weight of the ReFL term relu(margin - reward) [0.1 with --reward].")
        ] = -1.0,
        reward_margin: Annotated[
            float | None, typer.Option(help="The reward the ReFL hinge aims at [the model's].")
        ] = None,
        pixel: Annotated[
            float | None,
            typer.Option(
                help="adp: weight of the pixel discriminator (the latent one gets the rest) [0.15].",
                show_default=False,
            ),
        ] = None,
        mse: Annotated[
            float,
            typer.Option(
                help="adp, dmd2: weight of a regression of the student's sample onto the teacher's ODE "
                "sample from the same noise (DMD's regression loss; reads the --pairs bank if given)."
            ),
        ] = 0.0,
        r1: Annotated[float, typer.Option(help="Approximate R1 weight on real samples (adm, apt).")] = 0.0,
        r2: Annotated[float, typer.Option(help="Approximate R2 weight on generated samples (apt).")] = 0.0,
        pairs: Annotated[
            Path | None,
            typer.Option(
                help="A bank of teacher ODE pairs for kd, adp and dmd2's --mse (they then run no teacher): "
                "made in DIR first (--pair-count pairs of --teacher-steps Euler steps with CFG), reused when "
                "it is there."
            ),
        ] = None,
        pair_count: Annotated[int, typer.Option(help="Pairs the --pairs bank holds.")] = 4096,
        pair_precision: Annotated[
            str,
            typer.Option(help="The teacher's precision when making pairs: fp32 or bf16 (2x on AMX CPUs)."),
        ] = "fp32",
        delta_bits: Annotated[
            int | None,
            typer.Option(
                help="Store the student's dit.safetensors as its difference from the teacher's, in 8 or 4 "
                "bits (seed_core.delta: a half or a quarter of the float16 file; it then loads only beside "
                "that teacher).",
                show_default=False,
            ),
        ] = None,
        list_methods: Annotated[
            bool, typer.Option("--list", help="List methods, recipes and reward models.")
        ] = False,
    ) -> None:
        """Distill a teacher into a few-step or one-step student with one method or a recipe. Resumable
        (--resume), data-parallel over processes (--nproc, or launch with torchrun), logs JSON lines to
        OUT/log.jsonl; the student lands in OUT/student and is used with `--accel METHOD:path=OUT`."""
        import os
        import sys

        from seed_core.errors import UsageError

        if list_methods:
            from seed_core.registry import get_registry

            for spec in get_registry().distill_methods:
                typer.echo(f"{spec.name}\tmethod\t{spec.description}")
            for name in RECIPES:
                typer.echo(f"{name}\trecipe\t{DESCRIPTIONS[name]}")
            for spec in get_registry().reward_models:
                typer.echo(f"{spec.name}\treward\t{spec.description}")
            return
        if teacher is None or out is None or (method is None and recipe is None):
            raise UsageError("seed distill needs --teacher, --method or --recipe, and --out (see --help)")
        base = None
        if delta_bits is not None:  # refused before any work
            from seed_core.delta import resolve_base
            from seed_core.pipeline import resolve_model

            if delta_bits not in (8, 4):
                raise UsageError(f"--delta-bits {delta_bits}: use 8 or 4")
            spec, found = resolve_model(teacher)
            base = resolve_base(found or spec.weights or "")
            if not base.is_file():
                raise UsageError(
                    f"--delta-bits: teacher '{teacher}' has no dit.safetensors to store the student's "
                    "difference from (a model directory holds one)"
                )
        if nproc < 1:
            raise UsageError(f"--nproc must be >= 1 (processes on this machine), got {nproc}")
        if nproc > 1 and "WORLD_SIZE" not in os.environ:
            from seed_distill.api import relaunch

            raise typer.Exit(relaunch(nproc, sys.argv[1:]))
        from seed_distill.api import run_command

        path = run_command(
            teacher=teacher,
            out=out,
            method=method,
            recipe=recipe,
            steps=steps,
            student_steps=student_steps,
            batch=batch,
            shards=shards,
            lr=lr,
            critic_lr=critic_lr,
            ratio=ratio,
            guidance=guidance,
            teacher_steps=teacher_steps,
            size=size,
            prompts=prompts,
            ema=ema,
            checkpoint_every=checkpoint_every,
            minutes=minutes,
            seed=seed,
            device=device,
            resume=resume,
            force=force,
            fsdp=fsdp,
            data=data,
            init=init,
            edits=edits,
            edit_share=edit_share,
            tscd_target=tscd_target,
            tscd_points=tscd_points,
            critic_warmup=critic_warmup,
            gan=gan,
            reward=reward,
            reward_weight=reward_weight,
            reward_margin=reward_margin,
            pixel=pixel,
            mse=mse,
            r1=r1,
            r2=r2,
            pairs=pairs,
            pair_count=pair_count,
            pair_precision=pair_precision,
        )
        if path is not None and base is not None and delta_bits is not None:
            from seed_core.delta import DELTA_KEY, save_delta
            from seed_core.weights import load_safetensors, read_metadata

            file = Path(path) / "dit.safetensors"
            if not file.is_file():
                raise UsageError(f"--delta-bits: the student in {path} has no dit.safetensors; left as saved")
            meta = read_metadata(file)
            if DELTA_KEY not in meta:  # (a resumed run that had ended is one already)
                save_delta(load_safetensors(file), base, file, bits=delta_bits, metadata=meta, force=True)
        if path is not None:
            typer.echo(str(path))
        if "WORLD_SIZE" in os.environ:  # a torchrun rank, out of its group: end it without gloo's teardown
            from seed_distill.trainer import exit_rank

            exit_rank()
