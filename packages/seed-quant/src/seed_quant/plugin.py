"""seed-quant's plugin: the weight accelerators `int8`, `w8a8`, `fp8`, `int4` and `seed quantize`.
No torch at import: `seed --help` imports this module."""

# No `from __future__ import annotations`: typer reads the command's annotations at run time.
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from seed_core import hookimpl
from seed_core.specs import AcceleratorKind, AcceleratorOption, AcceleratorSpec

DESCRIPTIONS = {
    "int8": "INT8 weight-only, one scale per output channel (Linear, Conv, Embedding)",
    "w8a8": "INT8 weights and dynamic per-token INT8 activations (torch._int_mm), optional SmoothQuant",
    "fp8": "FP8 e4m3 weights and per-token activations (torch._scaled_mm; CUDA, compute capability 8.9+)",
    "int4": "INT4 weight-only, groups of 64 or 128 inputs (fused Triton dequantize-matmul on CUDA)",
}


def _apply(kind: str) -> Callable[..., Any]:
    def apply(pipeline: Any, **options: Any) -> Any:
        from seed_quant.quantize import apply_quant

        return apply_quant(pipeline, kind, **options)

    return apply


def _restore(module: Any, record: Any) -> Any:
    from seed_quant.quantize import restore

    return restore(module, record)


def _options(kind: str) -> tuple[AcceleratorOption, ...]:
    common = (AcceleratorOption("parts", str, "all", "components to quantize, comma-separated [all]"),)
    if kind == "int4":
        return (
            AcceleratorOption("group", int, 64, "inputs per scale and zero point: 32, 64, 128 or 256"),
            *common,
        )
    if kind == "w8a8":
        return (
            AcceleratorOption(
                "smooth",
                float,
                None,
                "SmoothQuant alpha in [0, 1]; 0 turns smoothing off [0.5 on text-to-image/video models]",
            ),
            AcceleratorOption("calibration", int, 4, "prompts run to measure activations for smoothing"),
            *common,
        )
    return common


@hookimpl
def seed_register_accelerators(register: Callable[[AcceleratorSpec], None]) -> None:
    for kind, text in DESCRIPTIONS.items():
        register(
            AcceleratorSpec(
                name=kind,
                kind=AcceleratorKind.WEIGHTS,
                apply=_apply(kind),
                description=text,
                options=_options(kind),
                restore=_restore,
            )
        )


@hookimpl
def seed_register_commands(app: Any) -> None:
    import typer

    @app.command("quantize")
    def quantize_command(
        model: Annotated[
            str, typer.Option("--model", "-m", help="Model name or directory.")
        ] = "seedream-mini",
        kind: Annotated[str, typer.Option(help=f"Format: {', '.join(DESCRIPTIONS)}.")] = "int8",
        out: Annotated[
            Path | None, typer.Option("--out", "-o", help="The quantized model directory to write.")
        ] = None,
        name: Annotated[
            str | None,
            typer.Option(help="Keep it in the local model store as NAME (then `-m NAME`), instead of -o."),
        ] = None,
        group: Annotated[int, typer.Option(help="int4: inputs per scale (64 or 128 usual).")] = 64,
        smooth: Annotated[
            float | None,
            typer.Option(
                help="w8a8: SmoothQuant alpha, calibrated on 4 prompts (0: off) [0.5 where the model "
                "generates from text, else 0]."
            ),
        ] = None,
        parts: Annotated[str, typer.Option(help="Components to quantize, comma-separated.")] = "all",
        dtype: Annotated[
            str, typer.Option(help="Storage dtype of the tensors that stay in floating point.")
        ] = "bfloat16",
        device: Annotated[str, typer.Option(help="torch device used while quantizing.")] = "cpu",
        force: Annotated[bool, typer.Option("--force", "-f", help="Replace an existing OUT.")] = False,
    ) -> None:
        """Quantize a model's Linear, Conv and Embedding weights and save a model directory that loads
        by path (`seed generate -m OUT`) or, kept with --name in the local model store ($SEED_HOME/models),
        by name (`seed generate -m NAME`), with no re-quantization. The layers that stay in floating point
        follow seed-quant's rules (README). `--accel int8` etc. quantize on load instead."""
        from rich.console import Console
        from rich.table import Table

        from seed_core.errors import UsageError
        from seed_core.pipeline import load

        if (out is None) == (name is None):
            raise UsageError(
                (
                    "give -o DIR or --name NAME, not both"
                    if out is not None
                    else "give one of -o DIR or --name NAME"
                )
                + " (the local model store): seed quantize -m MODEL -o DIR"
            )
        if name is not None:
            from seed_core.pipeline import models_home
            from seed_core.registry import get_registry

            if not name or "/" in name or name.startswith("."):
                raise UsageError(f"--name {name!r}: a plain name, without '/'")
            if name in get_registry().models:  # `-m NAME` would load the registered model, not this copy
                raise UsageError(f"--name {name}: a registered model is called that; choose another name")
            out = models_home() / name
            out.parent.mkdir(parents=True, exist_ok=True)
        if kind not in DESCRIPTIONS:
            raise UsageError(f"--kind {kind}: use one of {', '.join(DESCRIPTIONS)}")
        if dtype not in ("bfloat16", "float16", "float32"):
            raise UsageError(f"--dtype {dtype}: use bfloat16, float16 or float32")
        if out.exists() and not force:
            raise UsageError(f"{out} exists; pass --force to replace it")
        from seed_quant.quantize import apply_quant, directory_bytes, resolve_smooth, save_quantized, summary

        pipeline = load(model, device=device)
        if pipeline.source is not None and Path(pipeline.source).resolve() == out.resolve():
            raise UsageError(f"-o {out} is the model's own directory; write the quantized copy elsewhere")
        if pipeline.accelerators:
            done = pipeline.accelerators[0].label()
            raise UsageError(f"{model} is already '{done}'; quantize the original model instead")
        options: dict[str, Any] = {"parts": parts}
        if kind == "int4":
            options["group"] = group
        if kind != "w8a8" and smooth:
            raise UsageError(f"--smooth applies to --kind w8a8 only, not {kind}")
        if kind == "w8a8":  # resolved once, so `--smooth 0` stays off and the record says what was done
            options["smooth"] = resolve_smooth(pipeline, kind, smooth)
        apply_quant(pipeline, kind, check_device=False, **options)  # fp8 can be written anywhere
        save_quantized(pipeline, out, kind, options, dtype=dtype, force=force)
        table = Table(title=f"{kind} layers")
        for column in ("component", "format", "layers"):
            table.add_column(column)
        for comp, lk, count in summary(pipeline):
            table.add_row(comp, lk, str(count))
        Console(stderr=True).print(table)
        before = directory_bytes(Path(pipeline.source or "."))
        after = directory_bytes(out)
        typer.echo(f"{out}: {after / 2**20:.2f} MiB of weights ({after / max(before, 1):.2f}x the source's)")
