"""seed-attn's plugin: the attention backends (int8, int8-pv8, flex, paro), the `paro` accelerator and
`seed calibrate`. No torch at import: `seed --help` imports this module."""

# No `from __future__ import annotations`: typer reads the command's annotations at run time.
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from seed_core import hookimpl
from seed_core.specs import AcceleratorKind, AcceleratorOption, AcceleratorSpec, AttentionBackendSpec


def _lazy(name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        from seed_attn import backends

        return getattr(backends, name)(*args, **kwargs)

    call.__name__ = name
    return call


@hookimpl
def seed_register_attention_backends(register: Callable[[AttentionBackendSpec], None]) -> None:
    register(
        AttentionBackendSpec("int8", _lazy("int8_attention"), "dense, INT8 Q·Kᵀ (K smoothed), 16-bit P·V")
    )
    register(AttentionBackendSpec("int8-pv8", _lazy("int8_pv8_attention"), "dense, INT8 Q·Kᵀ and INT8 P·V"))
    register(
        AttentionBackendSpec(
            "flex", _lazy("flex_attention"), "FlexAttention; block-sparse with the active PARO plan's masks"
        )
    )
    register(
        AttentionBackendSpec(
            "paro", _lazy("paro_attention"), "PAROAttention: reordered, block-sparse, low-bit (--accel paro)"
        )
    )
    register(
        AttentionBackendSpec(
            "paro-calibrate", _lazy("calibrate_attention"), "exact attention that records PARO statistics"
        )
    )


def _apply_paro(pipeline: Any, **options: Any) -> Any:
    from seed_attn.backends import apply_paro

    return apply_paro(pipeline, **options)


def _apply_backend(name: str) -> Callable[..., Any]:
    def apply(pipeline: Any, **options: Any) -> Any:
        from seed_attn.backends import apply_backend

        return apply_backend(pipeline, name, **options)

    return apply


@hookimpl
def seed_register_accelerators(register: Callable[[AcceleratorSpec], None]) -> None:
    register(
        AcceleratorSpec(
            name="flex",
            kind=AcceleratorKind.ATTENTION,
            apply=_apply_backend("flex"),
            description="dense attention through PyTorch FlexAttention (block-sparse with a plan: --accel "
            "paro:kernel=flex)",
        )
    )
    register(
        AcceleratorSpec(
            name="int8-attn",
            kind=AcceleratorKind.ATTENTION,
            apply=_apply_backend("int8"),
            description="dense attention with INT8 Q·Kᵀ (K smoothed, per-block scales); P·V in 16 or 8 bits",
            options=(AcceleratorOption("pv_bits", int, 16, "P·V bits: 16 or 8"),),
        )
    )
    register(
        AcceleratorSpec(
            name="paro",
            kind=AcceleratorKind.ATTENTION,
            apply=_apply_paro,
            description="PAROAttention: per-head token reordering, static block-sparse masks, INT8/INT4 "
            "attention (needs `seed calibrate`)",
            options=(
                AcceleratorOption(
                    "density",
                    float,
                    None,
                    "share of attention blocks kept [the tuned copy's, else the plan's]",
                ),
                AcceleratorOption(
                    "bits", int, None, "Q·Kᵀ bits: 16, 8 or 4 [the tuned copy's, else the plan's]"
                ),
                AcceleratorOption("pv_bits", int, None, "P·V bits: 16, 8 or 4 [= bits]"),
                AcceleratorOption("reorder", bool, True, "use the calibrated token orders (false: ablation)"),
                AcceleratorOption("kernel", str, "auto", "auto (Triton on CUDA, else torch), torch or flex"),
                AcceleratorOption("plan", str, None, "plan directory [MODEL_DIR/paro]"),
                AcceleratorOption(
                    "schedule",
                    str,
                    None,
                    "one density per calibrated sampling step, noise to clean: 0.2/0.4 (instead of density)",
                ),
                AcceleratorOption(
                    "tuned",
                    bool,
                    None,
                    "run the plan directory's backbone tuned for it (seed tune) [where there is one and it "
                    "applies: not with a step or weight accelerator]",
                ),
            ),
        )
    )


@hookimpl
def seed_register_commands(app: Any) -> None:
    import typer

    @app.command("calibrate")
    def calibrate_command(
        model: Annotated[
            str, typer.Option("--model", "-m", help="Model name or directory.")
        ] = "seedream-mini",
        accel: Annotated[str, typer.Option("--accel", "-a", help="The accelerator to calibrate.")] = "paro",
        density: Annotated[float, typer.Option(help="Default share of blocks kept by the plan.")] = 0.3,
        bits: Annotated[int, typer.Option(help="Default bits of Q·Kᵀ and P·V: 16, 8 or 4.")] = 8,
        size: Annotated[str | None, typer.Option(help="WIDTHxHEIGHT [default: the model's].")] = None,
        prompt: Annotated[
            list[str] | None, typer.Option("--prompt", "-p", help="Calibration prompt, repeatable.")
        ] = None,
        prompts_file: Annotated[
            Path | None, typer.Option("--prompts", help="Calibration prompts from a file, one a line.")
        ] = None,
        steps: Annotated[int | None, typer.Option(help="Sampling steps [default: the model's].")] = None,
        groups: Annotated[
            int,
            typer.Option(
                help="Timestep groups with their own masks (equal spans of flow time); each sampled step can "
                "still take its own density (--accel paro:schedule=D1/D2/...)."
            ),
        ] = 4,
        alpha: Annotated[
            float, typer.Option(help="Weight of sparsity vs quantization in the paper's order score.")
        ] = 0.5,
        order_score: Annotated[
            str,
            typer.Option(
                help="How each head's token order is chosen: 'paro' (the paper's sparsity / quantization "
                "score) or 'error' (the output error of the plan's own attention at --density and --bits; "
                "a second pass over the prompts)."
            ),
        ] = "paro",
        orders_from: Annotated[
            Path | None,
            typer.Option(
                help="Keep the token orders of the plan in this directory (same size) and calibrate the "
                "masses only."
            ),
        ] = None,
        block: Annotated[
            int,
            typer.Option(
                help="Tokens per mask block (32, 64 or 128): finer blocks follow the attention closer at the "
                "same density, in more, smaller kernel tiles."
            ),
        ] = 64,
        out: Annotated[Path | None, typer.Option(help="Plan directory [MODEL_DIR/paro].")] = None,
        device: Annotated[str, typer.Option(help="torch device.")] = "cpu",
        frames: Annotated[
            int | None, typer.Option(help="Frames per video (text-to-video models) [the model's].")
        ] = None,
        force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing plan.")] = False,
        with_accel: Annotated[
            list[str] | None,
            typer.Option(
                "--with",
                help="Accelerator applied before calibrating (a student: tscd:steps=4), repeatable.",
            ),
        ] = None,
    ) -> None:
        """Calibrate PAROAttention for a model at one image size: run a few prompts, measure the attention
        maps block by block (never whole), choose each head's token order and save the plan beside the
        model. `--accel paro` then uses the plan that fits the requested size."""
        from seed_core.console import progress_bar
        from seed_core.errors import UsageError

        if accel != "paro":
            raise UsageError(f"--accel {accel}: only 'paro' has a calibration")
        if bits not in (16, 8, 4):
            raise UsageError(f"--bits must be 16, 8 or 4, got {bits}")
        if not 0 < density <= 1:
            raise UsageError(f"--density must be in (0, 1], got {density}")
        if frames is not None and frames < 1:
            raise UsageError(f"--frames must be >= 1, got {frames}")
        from seed_attn.calibrate import PROMPTS, calibrate
        from seed_core.files import read_prompts
        from seed_core.requests import parse_size

        prompts = [*(prompt or []), *(read_prompts(prompts_file) if prompts_file else [])] or list(PROMPTS)
        with progress_bar() as bar:
            task = bar.add_task("calibrating", total=len(prompts) * (2 if order_score == "error" else 1))
            path, plan = calibrate(
                model,
                size=parse_size(size) if size else None,
                prompts=prompts,
                steps=steps,
                density=density,
                bits=bits,
                groups=groups,
                alpha=alpha,
                out=out,
                force=force,
                device=device,
                tick=lambda _: bar.update(task, advance=1),
                accelerators=with_accel or (),
                frames=frames,
                order_score=order_score,
                orders_from=orders_from,
                block=block,
            )
        reordered = int((plan.orders != 0).sum())
        typer.echo(
            f"plan for {plan.model} at grid {'x'.join(map(str, plan.grid))} (+{plan.prefix} text tokens): "
            f"{reordered}/{plan.orders.numel()} heads reordered; {path}"
        )

    @app.command("tune")
    def tune_command(
        output: Annotated[
            Path, typer.Option("--output", "-o", help="The plan directory to write (plans + tuned backbone).")
        ],
        model: Annotated[
            str, typer.Option("--model", "-m", help="Model name or directory (with a PARO plan).")
        ] = "seedream-mini",
        accel: Annotated[
            str,
            typer.Option(
                "--accel",
                "-a",
                help="The PARO settings to tune for, as for generation: paro:density=0.3 (or a "
                "schedule, plan=DIR).",
            ),
        ] = "paro:density=0.3",
        size: Annotated[str, typer.Option(help="WIDTHxHEIGHT the plan covers.")] = "256x256",
        prompts_file: Annotated[
            Path | None,
            typer.Option("--prompts", help="Training prompts, one a line [the model's prompts.txt]."),
        ] = None,
        count: Annotated[int, typer.Option(help="Prompts generated to record the model's calls.")] = 800,
        steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 300,
        batch: Annotated[int, typer.Option(help="Recorded calls a step.")] = 4,
        lr: Annotated[float, typer.Option(help="Learning rate (AdamW).")] = 3e-5,
        held: Annotated[int, typer.Option(help="Prompts held out to measure the error.")] = 24,
        checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 50,
        seed: Annotated[int, typer.Option(help="Seed of the prompts, the generations and the batches.")] = 0,
        device: Annotated[str, typer.Option(help="torch device (cuda: much faster).")] = "cpu",
        resume: Annotated[
            bool, typer.Option(help="Continue from OUTPUT.work (its recorded calls and last checkpoint).")
        ] = False,
        delta_bits: Annotated[
            int,
            typer.Option(
                help="Store the tuned backbone as its difference from the model's, in 8 or 4 bits (a half "
                "or a quarter of the float16 file; it then loads only beside that model); 0: float16."
            ),
        ] = 0,
        force: Annotated[
            bool, typer.Option("--force", "-f", help="Replace OUTPUT (and start OUTPUT.work afresh).")
        ] = False,
    ) -> None:
        """Fit a copy of a model's backbone to its PARO plan (sparse-aware self-distillation): under the
        plan's block masks it learns to give what the model gives with exact attention. Records the
        model's calls at --size on --count prompts, trains --steps steps (resumable), and writes a plan
        directory with the tuned backbone beside its plan: `--accel paro:plan=OUTPUT` runs it at that size
        (the model's own backbone runs everything else, a draft included)."""
        import random
        import shutil

        import torch

        from seed_attn.tune import CALLS, TuneConfig, record_calls, save_tuned, tune
        from seed_core.console import progress_bar
        from seed_core.delta import resolve_base
        from seed_core.errors import UsageError
        from seed_core.files import read_prompts
        from seed_core.pipeline import load
        from seed_core.requests import parse_size

        for flag, value in (("--count", count), ("--steps", steps), ("--batch", batch),
                            ("--checkpoint-every", checkpoint_every)):  # fmt: skip
            if value < 1:
                raise UsageError(f"{flag} must be >= 1, got {value}")
        if lr <= 0:
            raise UsageError(f"--lr must be > 0, got {lr}")
        if delta_bits not in (0, 4, 8):
            raise UsageError(f"--delta-bits is 0 (float16), 8 or 4, got {delta_bits}")
        if accel.split(":")[0] != "paro":
            raise UsageError(f"--accel {accel}: seed tune fits a model to a PARO plan (paro:...)")
        if output.exists() and not force:
            raise UsageError(f"{output} exists; pass --force to replace it")
        work = Path(f"{output}.work")
        if work.exists() and not resume:
            if not force:
                raise UsageError(f"{work} holds an earlier run; pass --resume to continue it or --force")
            shutil.rmtree(work)
        width, height = parse_size(size)
        pipeline = load(model, device=device)
        if delta_bits and not resolve_base(pipeline.source or "").is_file():
            raise UsageError(
                f"--delta-bits: model '{model}' has no dit.safetensors to store a difference from"
            )
        if prompts_file is None:
            source = Path(pipeline.source or "") / "prompts.txt"
            if not source.is_file():
                raise UsageError(
                    f"model '{model}' ships no prompts.txt; give training prompts with --prompts"
                )
            prompts_file = source
        texts = read_prompts(prompts_file)
        texts = random.Random(seed).sample(texts, count) if count < len(texts) else texts
        work.mkdir(parents=True, exist_ok=True)
        settings = {"model": model, "size": [width, height], "prompts": texts, "seed": seed}
        with progress_bar() as bar:
            file = work / CALLS
            saved = torch.load(file, map_location=device, weights_only=False) if file.is_file() else None
            if saved is not None and saved["settings"] != settings:
                raise UsageError(f"{work} was recorded with other settings; start afresh with --force")
            if saved is None:
                task = bar.add_task("recording the model's calls", total=len(texts))
                calls = record_calls(
                    pipeline, texts, (width, height), seed=seed, tick=lambda: bar.advance(task)
                )
                tmp = file.with_suffix(".tmp")
                torch.save({"settings": settings, "calls": calls}, tmp)
                tmp.replace(file)  # a killed run records again only if this file is not whole
            else:
                calls = saved["calls"]
            # the model's own backbone with the plan installed is what trains (the masks in the loop)
            pipeline = load(
                model, accelerators=[f"{accel}{',' if ':' in accel else ':'}tuned=false"], device=device
            )
            task = bar.add_task("tuning", total=steps)
            cfg = TuneConfig(steps=steps, batch=batch, lr=lr, held=held, checkpoint_every=checkpoint_every,
                             seed=seed)  # fmt: skip
            record = tune(pipeline, calls, cfg, work, tick=lambda step, _: bar.update(task, completed=step))
        runtime = pipeline.paro  # what the copy learned under: a run at other masks warns
        record.update(accel=accel, size=[width, height], prompts=len(texts), lr=lr, batch=batch,
                      density=runtime.density, schedule=runtime.schedule, bits=runtime.bits)  # fmt: skip
        path = save_tuned(pipeline, output, record, force=force, delta_bits=delta_bits)
        shutil.rmtree(work)
        typer.echo(
            f"held-out error under the plan {record['held_error_before']:.4f} -> "
            f"{record['held_error_after']:.4f} (relative, against exact attention); {path}\n"
            f"use it with: --size {width}x{height} --accel paro:plan={output}"
        )
