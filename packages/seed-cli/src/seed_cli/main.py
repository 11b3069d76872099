"""The `seed` command line.

Every command reaches models and accelerators through the registry only. Torch is imported inside the
commands that run a model, never at import time, so `seed --help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core

from seed_core.errors import NoModelInstalledError, SeedError, UsageError
from seed_core.requests import parse_interval, parse_size

DEFAULT_MODEL = "seedream-mini"
DEFAULT_MODEL_PACKAGE = "seed-mini"


class SeedGroup(typer.core.TyperGroup):
    """Turns a `SeedError` from any sub-command (plugins' too) into one line on stderr and its exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except SeedError as exc:
            # under torchrun every rank meets the same user error: rank 0 says it
            if os.environ.get("RANK", "0") == "0":
                typer.secho(f"Error: {exc}", err=True, fg="red")
            raise typer.Exit(exc.exit_code) from None
        except BrokenPipeError:  # `seed inspect MODEL | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            raise typer.Exit(0) from None
        except OSError as exc:  # a file the user named cannot be read or written
            where = f"{exc.filename}: " if exc.filename else ""
            typer.secho(f"Error: {where}{exc.strerror or exc}", err=True, fg="red")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.secho("Interrupted.", err=True, fg="red")
            raise typer.Exit(130) from None


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr)


def _table(title: str, columns: list[str]) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_lines=False)
    for col in columns:
        table.add_column(col, overflow="fold")
    return table


def _registry() -> Any:
    from seed_core.registry import get_registry

    return get_registry()


def _dump(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


# --- listing commands ----------------------------------------------------------------------------------


def models(
    details: Annotated[
        bool,
        typer.Option(
            "--details", help="Also build each model on the meta device and show its size (slower)."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the installed models (name, family, tasks) and where they come from."""
    registry = _registry()
    rows = []
    for spec in registry.models:
        row: dict[str, Any] = {
            "name": spec.name,
            "family": spec.family,
            "tasks": list(spec.tasks),
            "aliases": list(spec.aliases),
            "plugin": registry.models.owner(spec.name),
            "description": spec.description,
        }
        if details:
            try:
                row["details"] = dict(spec.details()) if spec.details else {}
            except Exception as exc:  # a broken details() must not hide the other models
                row["details"] = {"error": f"{type(exc).__name__}: {exc}"}
        rows.append(row)
    from seed_core.pipeline import models_home, stored_models

    for name in stored_models():  # directories kept in the local store load by name too
        rows.append(
            {
                "name": name,
                "family": "",
                "tasks": [],
                "aliases": [],
                "plugin": "store",
                "description": f"model directory in {models_home()}",
            }
        )
    if as_json:
        return _dump(rows)
    if not rows:
        typer.echo(
            f"No model is installed. {DEFAULT_MODEL_PACKAGE} brings the embedded default ({DEFAULT_MODEL}): "
            f"{_default_package_hint(registry)}; plugins can add more."
        )
        return None
    table = _table(
        "Models",
        ["name", "family", "tasks", "aliases", "plugin", "description"] + (["details"] if details else []),
    )
    for row in rows:
        cells = [
            row["name"],
            row["family"],
            ", ".join(row["tasks"]),
            ", ".join(row["aliases"]),
            row["plugin"],
            row["description"],
        ]
        if details:
            cells.append(", ".join(f"{k}={v}" for k, v in row["details"].items()))
        table.add_row(*cells)
    _console().print(table)
    return None


def accelerators(
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Show whether each accelerator applies to this model, and why not."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the installed accelerators (distilled students, quantization, sparse attention, ...)."""
    from seed_core.pipeline import resolve_model

    registry = _registry()
    target = resolve_model(model)[0] if model else None
    rows = []
    for spec in registry.accelerators:
        row = {
            "name": spec.name,
            "kind": spec.kind.value,
            "options": {
                o.name: {"type": o.type.__name__, "default": o.default, "help": o.help} for o in spec.options
            },
            "plugin": registry.accelerators.owner(spec.name),
            "description": spec.description,
        }
        if target is not None:
            row["applies"] = spec.applies_to(target) or "yes"
        rows.append(row)
    if as_json:
        return _dump(rows)
    if not rows:
        typer.echo("No accelerator is installed yet; seed-distill, seed-attn and seed-quant provide them.")
        return None
    cols = ["name", "kind", "options", "plugin", "description"] + ([f"applies to {model}"] if model else [])
    table = _table("Accelerators", cols)
    for row in rows:
        opts = ", ".join(f"{k}={v['default']}" for k, v in row["options"].items())
        table.add_row(
            row["name"],
            row["kind"],
            opts,
            row["plugin"],
            row["description"],
            *([row["applies"]] if model else []),
        )
    _console().print(table)
    return None


def samplers(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the flow-matching samplers (use one with `seed generate --sampler NAME`)."""
    registry = _registry()
    rows = [
        {
            "name": s.name,
            "order": s.order,
            "aliases": list(s.aliases),
            "plugin": registry.samplers.owner(s.name),
            "description": s.description,
        }
        for s in registry.samplers
    ]
    if as_json:
        return _dump(rows)
    table = _table("Samplers", ["name", "order", "aliases", "plugin", "description"])
    for r in rows:
        table.add_row(r["name"], str(r["order"]), ", ".join(r["aliases"]), r["plugin"], r["description"])
    _console().print(table)
    return None


def attention(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the attention backends that `seed_core.attention.attention` can dispatch to."""
    registry = _registry()
    rows = [
        {
            "name": s.name,
            "aliases": list(s.aliases),
            "plugin": registry.attention_backends.owner(s.name),
            "description": s.description,
        }
        for s in registry.attention_backends
    ]
    if as_json:
        return _dump(rows)
    table = _table("Attention backends", ["name", "aliases", "plugin", "description"])
    for r in rows:
        table.add_row(r["name"], ", ".join(r["aliases"]), r["plugin"], r["description"])
    _console().print(table)
    return None


def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List plugins found through the `seed` entry point, with load errors.

    SEED_DISABLE_PLUGINS=all (or a comma list) skips plugins; SEED_LOAD_PLUGINS=a,b loads only those.
    """
    registry = _registry()
    rows = [vars(p).copy() for p in registry.plugins]
    if as_json:
        return _dump(rows)
    table = _table("Plugins", ["name", "distribution", "version", "status", "error"])
    style = {"loaded": "green", "builtin": "green", "failed": "red", "disabled": "yellow"}
    for r in rows:
        table.add_row(
            r["name"],
            r["distribution"] or "",
            r["version"] or "",
            f"[{style[r['status']]}]{r['status']}[/]",
            r["error"] or "",
        )
    _console().print(table)
    return None


def info(
    image: Annotated[Path, typer.Argument(help="An image written by `seed generate` / `seed edit`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON metadata.")] = False,
) -> None:
    """Show how an image was made: prompt, model, accelerators, settings, seed and versions."""
    from seed_core.images import read_metadata

    data = read_metadata(image)
    if as_json:
        return _dump(data)
    try:
        table = _info_table(str(image), data)
    except (KeyError, AttributeError, TypeError):
        from seed_core.errors import ImageMetadataError

        raise ImageMetadataError(
            f"{image}: its Seed metadata is not in the form seed writes; try --json"
        ) from None
    _console().print(table)
    return None


def inspect(
    target: Annotated[
        str, typer.Argument(help="A checkpoint file (.safetensors, .pth, ...) or a model name.")
    ],
) -> None:
    """Print one tensor a line (name, shape, dtype): of a checkpoint file, or of a registered model built on
    the meta device (the layout its checkpoints must have; one block per component)."""
    path = Path(target)
    if path.exists():
        from seed_core.weights import list_tensors

        for name, shape, dtype in list_tensors(path):
            typer.echo(f"{name} {shape} {dtype}")
        return
    spec = _registry().models.get(target)
    if spec.meta is None:
        from seed_core.errors import UsageError

        raise UsageError(
            f"model '{spec.name}' does not describe its tensors; inspect its checkpoint files instead"
        )
    components = dict(spec.meta())
    for name, module in components.items():
        for key, tensor in module.state_dict().items():
            full = f"{name}: {key}" if len(components) > 1 else key
            typer.echo(f"{full} {list(tensor.shape)} {str(tensor.dtype).removeprefix('torch.')}")


def convert(
    source: Annotated[Path, typer.Argument(help="A checkpoint: .pth / .pt / .bin / .ckpt or .safetensors.")],
    output: Annotated[Path, typer.Argument(help="The .safetensors file to write.")],
    dtype: Annotated[
        str | None, typer.Option(help="Cast floating tensors: float32, float16 or bfloat16 [keep].")
    ] = None,
    base: Annotated[
        Path | None,
        typer.Option(
            help="The weights SOURCE was made from (a file, or its model directory): with --delta-bits, "
            "write SOURCE as its difference from them; a SOURCE that is such a difference is written whole "
            "(float16 unless --dtype).",
            show_default=False,
        ),
    ] = None,
    delta_bits: Annotated[
        int | None,
        typer.Option(help="8 or 4: store the difference from --base in that many bits.", show_default=False),
    ] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite OUTPUT.")] = False,
) -> None:
    """Rewrite a checkpoint as safetensors with the same keys (`.pth` files are read with
    weights_only=True: tensors only, never code), optionally in another dtype; written atomically.
    With --base and --delta-bits, as a delta file: its low-bit difference from the weights it was made from
    (a distilled student or a fine-tuned copy moves a few percent from them; 4 bits of that keep the images,
    at a quarter of the float16 bytes), which loads only beside that base."""
    from seed_core.delta import DELTA_KEY, load_delta, resolve_base, save_delta
    from seed_core.errors import UsageError
    from seed_core.weights import read_metadata, read_state_dict, save_safetensors

    if dtype not in (None, "float32", "float16", "bfloat16"):
        raise UsageError(f"--dtype {dtype}: use float32, float16 or bfloat16")
    if delta_bits not in (None, 8, 4):
        raise UsageError(f"--delta-bits {delta_bits}: use 8 or 4")
    if delta_bits is not None and base is None:
        raise UsageError("--delta-bits writes the difference from --base; give --base (what it came from)")
    if delta_bits is not None and dtype is not None:
        raise UsageError("--delta-bits takes no --dtype (the difference is stored in its bits)")
    if output.suffix != ".safetensors":
        raise UsageError(f"{output}: the output must end in .safetensors")
    if output.exists() and not force:
        raise UsageError(f"{output} exists; pass --force to replace it")
    is_safetensors = source.suffix == ".safetensors" and source.is_file()
    meta = read_metadata(source) if is_safetensors else {}
    if meta.pop(DELTA_KEY, None) is not None:
        if delta_bits is not None:
            raise UsageError(f"{source} is already a delta file; write it whole first (--base only)")
        if base is None:
            raise UsageError(f"{source} is a delta file: give --base, the model (or file) it was made from")
        state = load_delta(source, base)
        dtype = dtype or "float16"  # what the weights were before they became a difference
    else:
        if base is not None and delta_bits is None:
            raise UsageError("--base is for a delta file, or with --delta-bits; drop it or add --delta-bits")
        state = read_state_dict(source)
    if delta_bits is not None:
        assert base is not None
        base_file = resolve_base(base)
        if not base_file.is_file():
            raise UsageError(f"--base {base}: no such weights file (a directory must hold dit.safetensors)")
        save_delta(state, base_file, output, bits=delta_bits, metadata=meta, force=force)
        typer.echo(f"{output}: {len(state)} tensors, the difference from {base_file} in {delta_bits} bits")
        return
    save_safetensors(state, output, dtype=dtype, metadata=meta, force=force)
    typer.echo(f"{output}: {len(state)} tensors")


def _info_table(title: str, data: dict[str, Any]) -> Any:
    request = data.get("request", {})
    table = _table(title, ["field", "value"])
    table.add_row("task", str(request.get("task", "")))
    table.add_row("prompt", str(request.get("prompt", "")))
    table.add_row("model", str(data.get("model", "")))
    accels = [
        a["name"]
        + (":" + ",".join(f"{k}={v}" for k, v in a.get("options", {}).items()) if a.get("options") else "")
        for a in data.get("accelerators", [])
    ]
    table.add_row("accelerators", ", ".join(accels) or "none")
    table.add_row("seed", str(data.get("seed", "")))
    for key, value in data.get("settings", {}).items():
        if key == "task":  # the pipeline's name for the request's task, shown above
            continue
        table.add_row(key, str(value))
    table.add_row("seconds", str(data.get("seconds", "")))
    table.add_row("versions", ", ".join(f"{k} {v}" for k, v in data.get("versions", {}).items()))
    return table


def doctor() -> None:
    """Check the installation: Python, torch, devices, Seed packages and plugins."""
    import platform

    from seed_core.versions import seed_distributions

    console = _console()
    table = _table("seed doctor", ["check", "result"])
    table.add_row("python", f"{platform.python_version()} ({sys.executable})")
    table.add_row("platform", platform.platform())
    problems = 0
    try:
        import torch
    except Exception as exc:  # report, don't crash: this is the command people run when things break
        table.add_row("torch", f"[red]cannot import: {exc}[/]")
        problems += 1
    else:
        table.add_row("torch", torch.__version__)
        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            table.add_row("cuda", f"{torch.version.cuda}: " + ", ".join(names))
        else:
            table.add_row("cuda", "not available (CPU only)")
        mps = getattr(torch.backends, "mps", None)
        table.add_row("mps", "available" if mps is not None and mps.is_available() else "not available")
        table.add_row("cpu threads", str(torch.get_num_threads()))
    for name, version in seed_distributions().items():
        table.add_row(name, version)
    registry = _registry()
    failed = registry.failed_plugins
    ok = [p for p in registry.plugins if p.ok]
    table.add_row(
        "plugins",
        f"{len(ok)} loaded" + (f", [red]{len(failed)} failed[/] (see `seed plugins`)" if failed else ""),
    )
    table.add_row("models", ", ".join(registry.models.names()) or "none installed")
    table.add_row("attention backends", ", ".join(registry.attention_backends.names()))
    console.print(table)
    if problems:
        raise typer.Exit(1)


# --- running models ------------------------------------------------------------------------------------


def _resolve_model_name(model: str | None) -> str:
    registry = _registry()
    if model is not None:
        return model
    if DEFAULT_MODEL in registry.models:
        return DEFAULT_MODEL
    installed = registry.models.names()
    if not installed:
        raise NoModelInstalledError(
            f"No model is installed: the embedded default '{DEFAULT_MODEL}' comes with the "
            f"{DEFAULT_MODEL_PACKAGE} package ({_default_package_hint(registry)})."
        )
    raise NoModelInstalledError(
        f"The default model '{DEFAULT_MODEL}' is not installed ({DEFAULT_MODEL_PACKAGE}: "
        f"{_default_package_hint(registry)}); pass -m with one of: {', '.join(installed)}."
    )


def _default_package_hint(registry: Any) -> str:
    """Why the default model's package contributes nothing: its plugin skipped by the environment,
    failed, or absent."""
    for record in registry.plugins:
        if record.distribution == DEFAULT_MODEL_PACKAGE and record.status in ("disabled", "failed"):
            why = record.error or record.status
            return f"installed, but its plugin is {record.status}: {why}; see `seed plugins`"
    return f"`pip install {DEFAULT_MODEL_PACKAGE}`"


def _parse_size(size: str | None, width: int | None, height: int | None) -> tuple[int | None, int | None]:
    """`--size 512x768` (width x height) or `--size 512` (a square); not mixed with --width / --height."""
    if size is None:
        return width, height
    if width is not None or height is not None:
        raise UsageError("give either --size or --width / --height, not both")
    return parse_size(size)


def _outputs(output: Path, count: int) -> list[Path]:
    if output.suffix.lower() != ".png":
        raise UsageError(f"output {output} must end in .png")
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{i}{output.suffix}") for i in range(count)]


def _run(
    request: Any,
    model: str | None,
    accel: list[str],
    output: Path | None,
    default_output: str,
    device: str,
    dtype: str,
    force: bool,
) -> None:
    from seed_core.files import check_writable
    from seed_core.pipeline import check_device, load, plan_accelerators, resolve_model

    registry = _registry()
    check_device(device, dtype)
    name = _resolve_model_name(model)
    spec, _ = resolve_model(name)
    plan_accelerators(accel, spec)  # refuse unknown / conflicting accelerators before any slow work
    if request.sampler is not None:
        registry.samplers.get(request.sampler)
    request.validate()
    paths = _outputs(
        output or Path(default_output.format(model=spec.name, seed=request.seed)), request.num_images
    )
    for path in paths:
        check_writable(path, force)

    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from seed_core.console import progress_bar
    from seed_core.images import save_png

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with progress_bar(*columns) as bar:  # on stderr: stdout lists the written files
        task = bar.add_task(f"loading {spec.name}", total=None)
        pipeline = load(name, accelerators=accel, device=device, dtype=dtype)
        _warn_steps(pipeline, request)
        bar.update(task, description=f"{request.task} with {spec.name}")

        def progress(step: int, total: int) -> None:
            bar.update(task, completed=step, total=total)

        result = pipeline.run(request, progress)
    for i, (image, path) in enumerate(zip(result.images, paths, strict=True)):
        save_png(image, path, result.metadata(i), force=force)
        typer.echo(str(path))


def _warn_steps(pipeline: Any, request: Any) -> None:
    """A distilled student asked for other steps than it was distilled for runs, as asked, but says so."""
    student = [a for a in pipeline.accelerators if a.kind == "steps"]
    made_for = getattr(pipeline, "student_steps", None)  # set by seed-distill's step accelerators
    if student and request.steps is not None and made_for is not None and request.steps != made_for:
        plural = "s" if made_for != 1 else ""
        typer.secho(
            f"Warning: --steps {request.steps} samples the {student[0].name} student, distilled for "
            f"{made_for} step{plural}, outside what it learned (drop --steps to use its {made_for})",
            err=True,
            fg="yellow",
        )


ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help=f"Model name, alias or model directory [default: {DEFAULT_MODEL}]. See `seed models`.",
        show_default=False,
    ),
]
AccelOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--accel",
        "-a",
        help="Accelerator, repeatable: NAME or NAME:key=value,key=value. See `seed accelerators`.",
    ),
]
StepsOpt = Annotated[
    int | None,
    typer.Option(help="Sampling steps [default: the model's].", min=1, max=1000, show_default=False),
]
GuidanceOpt = Annotated[
    float | None,
    typer.Option(
        "--guidance",
        "-g",
        help="Text guidance (CFG) scale [default: the model's].",
        min=0.0,
        show_default=False,
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", "-s", help="Random seed; image i uses seed + i.", min=0)]
NumOpt = Annotated[
    int,
    typer.Option(
        "--num-images", "-n", help="Images to make (written as NAME-0.png, NAME-1.png, ...).", min=1, max=64
    ),
]
SamplerOpt = Annotated[
    str | None, typer.Option(help="Sampler [default: the model's]. See `seed samplers`.", show_default=False)
]
ShiftOpt = Annotated[
    float | None, typer.Option(help="Timestep shift [default: resolution-aware].", show_default=False)
]
IntervalOpt = Annotated[
    str | None,
    typer.Option(
        help="Guidance only at noise levels LOW,HIGH (1 = noise, 0 = image); the other steps run the "
        "model once, unguided [default: the model's].",
        show_default=False,
    ),
]
SizeOpt = Annotated[
    str | None,
    typer.Option(
        help="Output size, WIDTHxHEIGHT or one number for a square [default: the model's].",
        show_default=False,
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="torch device: cpu, cuda, cuda:1, mps.")]
DtypeOpt = Annotated[str, typer.Option(help="Compute dtype: float32, bfloat16, float16.")]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing output files.")]


def generate(
    prompt: Annotated[str, typer.Argument(help="What the image should show.")],
    model: ModelOpt = None,
    accel: AccelOpt = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output PNG [default: seed-MODEL-SEED.png].", show_default=False),
    ] = None,
    width: Annotated[
        int | None, typer.Option(help="Width in pixels [default: the model's].", show_default=False)
    ] = None,
    height: Annotated[
        int | None, typer.Option(help="Height in pixels [default: the model's].", show_default=False)
    ] = None,
    size: SizeOpt = None,
    steps: StepsOpt = None,
    guidance: GuidanceOpt = None,
    seed: SeedOpt = 0,
    num_images: NumOpt = 1,
    sampler: SamplerOpt = None,
    shift: ShiftOpt = None,
    guidance_interval: IntervalOpt = None,
    negative: Annotated[str, typer.Option(help="Negative prompt.")] = "",
    reference: Annotated[
        list[Path] | None,
        typer.Option("--ref", help="Reference image, repeatable (multi-image composition)."),
    ] = None,
    draft: Annotated[
        bool | None,
        typer.Option(
            "--draft/--no-draft",
            help="Above the model's draft size, draw a small draft and refine it at full size, or sample "
            "at full size from the noise [default: the model's; seedream-mini drafts at 64 px].",
            show_default=False,
        ),
    ] = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
    force: ForceOpt = False,
) -> None:
    """Generate images from a text prompt, optionally with accelerators.

    Example: seed generate "a red circle left of a blue square" -m seedream-mini --accel dmd2 -n 4
    """
    from seed_core.requests import GenerateRequest

    width, height = _parse_size(size, width, height)
    request = GenerateRequest(
        prompt=prompt,
        negative_prompt=negative,
        width=width,
        height=height,
        steps=steps,
        guidance=guidance,
        seed=seed,
        num_images=num_images,
        sampler=sampler,
        shift=shift,
        references=[str(r) for r in reference or []],
        draft=draft,
        guidance_interval=parse_interval(guidance_interval) if guidance_interval else None,
    )
    _run(request, model, accel or [], output, "seed-{model}-{seed}.png", device, dtype, force)


def edit(
    image: Annotated[Path, typer.Argument(help="The image to edit.")],
    instruction: Annotated[str, typer.Argument(help="What to change, e.g. 'make the circle green'.")],
    model: ModelOpt = None,
    accel: AccelOpt = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output PNG [default: IMAGE-edited.png].", show_default=False),
    ] = None,
    size: SizeOpt = None,
    reference: Annotated[
        list[Path] | None,
        typer.Option("--ref", help="Extra reference image, repeatable (the source is always the first)."),
    ] = None,
    steps: StepsOpt = None,
    guidance: GuidanceOpt = None,
    image_guidance: Annotated[
        float | None,
        typer.Option(
            help="Image guidance: how closely to keep the source [default: the model's].",
            min=0.0,
            show_default=False,
        ),
    ] = None,
    seed: SeedOpt = 0,
    num_images: NumOpt = 1,
    sampler: SamplerOpt = None,
    guidance_interval: IntervalOpt = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
    force: ForceOpt = False,
) -> None:
    """Edit an image by instruction (SeedEdit), keeping what the instruction does not ask to change."""
    from seed_core.requests import EditRequest

    width, height = _parse_size(size, None, None)
    request = EditRequest(
        prompt=instruction,
        image=str(image),
        width=width,
        height=height,
        references=[str(r) for r in reference or []],
        steps=steps,
        guidance=guidance,
        seed=seed,
        num_images=num_images,
        sampler=sampler,
        image_guidance=image_guidance,
        guidance_interval=parse_interval(guidance_interval) if guidance_interval else None,
    )
    default = str(image.with_name(f"{image.stem}-edited.png"))
    _run(request, model, accel or [], output, default, device, dtype, force)


def create_app() -> typer.Typer:
    """The `seed` application with the built-in commands and every plugin's commands."""
    app = typer.Typer(
        name="seed",
        cls=SeedGroup,
        help="Seed: ByteDance Seed's visual generation models and their accelerators, on any machine.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # plain help: rich's help renderer alone costs ~0.35 s of start-up
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    for command in (generate, edit):
        app.command()(command)
    for command in (models, accelerators, samplers, attention, plugins, info, inspect, convert, doctor):
        app.command()(command)
    _registry().register_commands(app)
    return app


def main() -> None:
    create_app()()


if __name__ == "__main__":
    main()
