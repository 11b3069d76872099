"""seed-mini's parts: the `seedream-mini` and `seedvr2-mini` models (when their weights are installed), the
reward model and `seed eval`.

No torch at import: `seed --help` imports this module.
"""

# No `from __future__ import annotations` here: typer reads the command's annotations at run time, and
# they name `typer`, which is imported inside the hook.
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from seed_core import hookimpl
from seed_core.specs import LoadOptions, ModelSpec, RewardModelSpec

WEIGHTS = Path(__file__).parent / "weights"


def _build(spec: ModelSpec, options: LoadOptions) -> Any:
    from seed_dit.pipeline import SeedreamPipeline

    return SeedreamPipeline.from_pretrained(spec, options.weights or spec.weights or "", options)


@hookimpl
def seed_register_models(register: Callable[[ModelSpec], None]) -> None:
    path = WEIGHTS / "seedream-mini"
    if (path / "config.json").is_file():  # weights are shipped once trained; until then nothing to register
        register(
            ModelSpec(
                "seedream-mini",
                "seedream",
                ("t2i", "edit", "compose"),
                _build,
                description="Seedream trained on the shapes world: text-to-image, edit, two-image compose",
                weights=str(path),
                aliases=("mini",),
            )
        )
    path = WEIGHTS / "seedvr2-mini"
    if (path / "config.json").is_file():
        register(
            ModelSpec(
                "seedvr2-mini",
                "seedvr2",
                ("restore",),
                _build_restorer,
                description="SeedVR2's design (causal video VAE + NaDiT, one step) trained on degraded "
                "shapes videos",
                weights=str(path),
            )
        )


def _build_restorer(spec: ModelSpec, options: LoadOptions) -> Any:
    from seed_video.pipeline import SeedVR2Pipeline

    return SeedVR2Pipeline.from_pretrained(spec, options.weights or spec.weights or "", options)


def _reward(device: str) -> Any:
    from seed_mini import reward

    return reward.load(device=device)


@hookimpl
def seed_register_reward_models(register: Callable[[RewardModelSpec], None]) -> None:
    import json

    config = WEIGHTS / "reward" / "config.json"  # read here without torch: `seed --help` runs this hook
    if config.is_file():
        register(
            RewardModelSpec(
                "seed-mini",
                _reward,
                description="shapes world: log-odds that an image fits its prompt (trained on the world)",
                margin=float(json.loads(config.read_text())["margin"]),
            )
        )


@hookimpl
def seed_register_commands(app: Any) -> None:
    import typer

    @app.command("eval")
    def eval_command(
        model: Annotated[
            str, typer.Option("--model", "-m", help="Model name or directory.")
        ] = "seedream-mini",
        accel: Annotated[
            list[str] | None, typer.Option("--accel", "-a", help="Accelerator, repeatable.")
        ] = None,
        quick: Annotated[
            bool, typer.Option(help="A quarter of each suite (minutes instead of tens).")
        ] = False,
        steps: Annotated[int | None, typer.Option(help="Sampling steps [default: the model's].")] = None,
        guidance: Annotated[float | None, typer.Option(help="Guidance [default: the model's].")] = None,
        image_guidance: Annotated[
            float | None,
            typer.Option(help="Edits: the source image's guidance [default: the model's or student's]."),
        ] = None,
        shift: Annotated[float | None, typer.Option(help="Timestep shift [default: the model's].")] = None,
        sampler: Annotated[
            str | None, typer.Option(help="Sampler [default: the model's]. See `seed samplers`.")
        ] = None,
        guidance_interval: Annotated[
            str | None,
            typer.Option(help="Guidance only at noise levels LOW,HIGH [default: the model's]."),
        ] = None,
        draft: Annotated[
            bool | None,
            typer.Option(
                "--draft/--no-draft",
                help="Above the model's draft size, refine a small draft, or sample at full size from "
                "the noise [default: the model's].",
                show_default=False,
            ),
        ] = None,
        seed: Annotated[int, typer.Option(help="Base seed.")] = 0,
        seeds: Annotated[
            int,
            typer.Option(
                help="Run the suites at N base seeds (SEED, SEED + 10000, ...) and pool them: N times "
                "the samples, and the standard error of the mean prompt accuracy."
            ),
        ] = 1,
        device: Annotated[str, typer.Option(help="torch device.")] = "cpu",
        size: Annotated[
            int | None,
            typer.Option(help="Run the text-to-image suites at SIZE x SIZE pixels (no edit / compose)."),
        ] = None,
        output: Annotated[Path | None, typer.Option("--json", help="Write the results here as JSON.")] = None,
        force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite --json.")] = False,
    ) -> None:
        """Measure a model (with accelerators) on the shapes world: prompt accuracy, edits, composition,
        diversity (entropy as a share of what the world's own draw of as many objects has, so 1 is as
        diverse as the world), and a Fréchet distance on the features of the shipped world classifier (with
        the floor that a perfect model reaches on the same number of samples). Prints a table and writes
        JSON."""
        import json

        from rich.console import Console
        from rich.table import Table

        from seed_core.console import progress_bar
        from seed_core.errors import UsageError
        from seed_core.files import atomic_write_bytes, check_writable
        from seed_core.requests import parse_interval
        from seed_mini.evaluate import CATEGORIES, SEED_STRIDE, evaluate, pool, total_ticks

        if seeds < 1:
            raise UsageError(f"--seeds must be >= 1, got {seeds}")
        if output is not None:
            check_writable(output, force)
        console = Console(stderr=True)
        with progress_bar(console=console) as bar:
            task = bar.add_task("evaluating", total=seeds * total_ticks(quick, size))
            runs = [
                evaluate(
                    model,
                    accel or [],
                    quick=quick,
                    steps=steps,
                    guidance=guidance,
                    image_guidance=image_guidance,
                    shift=shift,
                    sampler=sampler,
                    draft=draft,
                    guidance_interval=parse_interval(guidance_interval) if guidance_interval else None,
                    seed=seed + k * SEED_STRIDE,
                    device=device,
                    tick=lambda what: bar.update(task, advance=1, description=what),
                    size=size,
                )
                for k in range(seeds)
            ]
            result = pool(runs) if seeds > 1 else runs[0]
        at = (f" at {size}x{size}" if size else "") + (" without drafts" if draft is False else "")
        table = Table(title=f"seed eval: {model} {' '.join(accel or [])}{at}".strip(), title_justify="left")
        table.add_column("metric")
        table.add_column("value", justify="right")
        table.add_column("cases", justify="right")
        for category, value in result["prompt_accuracy"].items():
            table.add_row(
                f"prompt accuracy: {category}", f"{value:.1%}", str(result["prompt_cases"][category])
            )
        edit = result["edit"]
        if edit["cases"]:
            table.add_row("edit success", f"{edit['success']:.1%}", str(edit["cases"]))
            for op, (hits, cases) in edit.get("by_op", {}).items():
                table.add_row(f"  {op}", f"{hits / cases:.1%}", str(cases))
            table.add_row("edit preservation", f"{edit['preservation']:.1%}", str(edit["cases"]))
            table.add_row(
                "edit PSNR outside the edit", f"{edit['psnr_outside_db']:.1f} dB", str(edit["cases"])
            )
        if result["compose"]["cases"]:
            table.add_row(
                "composition success", f"{result['compose']['success']:.1%}", str(result["compose"]["cases"])
            )
        for prompt, d in result["diversity"].items():
            table.add_row(
                f"diversity '{prompt}': entropy ratio", f"{d['entropy_ratio']:.2f}", str(d["samples"])
            )
            tv = f"{d['tv_distance']:.2f}" + (f" ({d['tv_floor']:.2f})" if "tv_floor" in d else "")
            table.add_row(f"diversity '{prompt}': TV distance (floor)", tv, str(d["samples"]))
        fd = result["frechet"]
        table.add_row(
            "Fréchet distance (floor)", f"{fd['distance']:.2f} ({fd['floor']:.2f})", str(fd["samples"])
        )
        if "pooled" in result:
            p = result["pooled"]
            table.add_row(
                f"prompt accuracy: mean of four, seeds {', '.join(map(str, p['seeds']))}",
                f"{p['prompt_mean']:.1%} ± {p['prompt_mean_se']:.1%}",
                str(sum(result["prompt_cases"].get(c, 0) for c in CATEGORIES)),
            )
        table.add_row("seconds", f"{result['seconds']:.0f}", "")
        Console().print(table)
        if output is not None:
            atomic_write_bytes(output, (json.dumps(result, indent=2) + "\n").encode(), force=force)
            typer.echo(str(output))
