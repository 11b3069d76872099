"""Quantizing a loaded pipeline, restoring a quantized file, and writing a quantized model directory.

The rules for what is quantized (and what stays in the model's precision) are the same for every
backbone; `rule()` is the whole of them:

- Linear layers take the chosen format. W8A8 needs in/out features that are multiples of 8 (the INT8
  tensor-core GEMM) and FP8 multiples of 16; a layer that does not fit falls back to INT8 weight-only
  (W8A8) or stays (FP8). INT4 needs an even number of inputs, else INT8.
- Conv2d layers (the VAE's) are weight-only: INT8 for int8 / w8a8 / fp8, INT4 for int4.
- Embedding tables are quantized row-wise: INT8, or INT4 for int4; only looked-up rows are dequantized.
- Stay in the model's precision: layers with fewer than `MIN_WEIGHTS` weights (their scales would cost
  about what they save; in practice input and output projections of a few channels), norms, biases,
  positional tables and other bare parameters, and the modules the pipeline names in
  `sensitive_modules()` (for Seedream: the DiT's patch embedding and final projection, measured).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seed_core.errors import AcceleratorError, CheckpointMismatchError, CorruptCheckpointError
from seed_core.pipeline import Pipeline
from seed_core.weights import CASTABLE
from seed_quant.layers import LAYERS, QuantLayer

KINDS = ("int8", "w8a8", "fp8", "int4")
GROUPS = (32, 64, 128, 256)
MIN_WEIGHTS = 4096
FORMAT = 1


def fp8_unsupported(device: torch.device) -> str | None:
    """Why FP8 matmuls cannot run on `device` (None: they can)."""
    if device.type != "cuda":
        return f"fp8 needs a CUDA GPU with FP8 tensor cores (compute capability 8.9+), not {device.type}"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 9):
        return f"fp8 needs compute capability 8.9+ (Ada, Hopper or newer); this GPU is {major}.{minor}"
    return None


def rule(name: str, module: nn.Module, kind: str, keep: Sequence[str] = ()) -> str | None:
    """The layer kind `module` becomes under `kind`, or None where it stays as it is."""
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in keep):
        return None
    if isinstance(module, nn.Linear):
        n, k = module.out_features, module.in_features
        if n * k < MIN_WEIGHTS:
            return None
        if kind == "w8a8":
            return "w8a8" if n % 8 == 0 and k % 8 == 0 else "int8"
        if kind == "fp8":
            return "fp8" if n % 16 == 0 and k % 16 == 0 else None
        if kind == "int4":
            return "int4" if k % 2 == 0 else "int8"
        return "int8"
    if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros":
        if module.weight.numel() < MIN_WEIGHTS:
            return None
        return "conv-int4" if kind == "int4" and module.weight[0].numel() % 2 == 0 else "conv-int8"
    if isinstance(module, nn.Embedding) and module.max_norm is None:
        if module.weight.numel() < MIN_WEIGHTS:
            return None
        return "embed-int4" if kind == "int4" and module.embedding_dim % 2 == 0 else "embed-int8"
    return None


def quantized_layers(module: nn.Module) -> dict[str, str]:
    """{name: layer kind} of the quantized layers inside `module`."""
    return {name: child.kind for name, child in module.named_modules() if isinstance(child, QuantLayer)}


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, attr, new)


def quantize_module(
    module: nn.Module,
    kind: str,
    *,
    group: int = 64,
    keep: Sequence[str] = (),
    act_max: Mapping[str, torch.Tensor] | None = None,
    alpha: float = 0.0,
) -> dict[str, str]:
    """Swap the eligible layers of `module` for quantized ones, in place; return {name: layer kind}."""
    done = quantized_layers(module)
    if done:
        raise AcceleratorError(
            f"the model is already quantized ({next(iter(done.values()))} layers); quantize the original"
        )
    plan = {
        name: lk for name, child in module.named_modules() if name and (lk := rule(name, child, kind, keep))
    }
    for name, lk in plan.items():
        child = module.get_submodule(name)
        stats = (act_max or {}).get(name)
        _replace(module, name, LAYERS[lk].from_float(child, group=group, act_max=stats, alpha=alpha))
    return plan


def _components(pipeline: Pipeline, parts: str) -> dict[str, nn.Module]:
    found = {k: v for k, v in pipeline.components().items() if isinstance(v, nn.Module)}
    if parts in ("all", ""):
        return found
    wanted = [p.strip() for p in parts.split(",") if p.strip()]
    unknown = [p for p in wanted if p not in found]
    if unknown:
        raise AcceleratorError(
            f"parts={parts}: the model has no component '{unknown[0]}' (it has {', '.join(found)})"
        )
    return {k: found[k] for k in wanted}


def _device(module: nn.Module) -> torch.device:
    for tensor in [*module.parameters(), *module.buffers()]:
        return tensor.device
    return torch.device("cpu")


CALIBRATION_PROMPTS = (
    "a red circle left of a blue square",
    "two green triangles on a white background",
    "a small yellow star above a large purple hexagon",
    "an orange square",
)


def calibrate_inputs(
    pipeline: Pipeline, names: Mapping[str, Iterable[str]], prompts: Sequence[str], steps: int | None = None
) -> dict[str, dict[str, torch.Tensor]]:
    """Run `prompts` through the pipeline and record max |input| per channel of the named Linear layers
    ({component: [layer names]}): the statistics SmoothQuant's scales come from."""
    stats: dict[str, dict[str, torch.Tensor]] = {c: {} for c in names}
    hooks = []
    components = pipeline.components()
    for comp, layer_names in names.items():
        for name in layer_names:

            def record(_m: nn.Module, args: tuple[Any, ...], comp: str = comp, name: str = name) -> None:
                x = args[0].detach().reshape(-1, args[0].shape[-1]).abs().amax(dim=0).float()
                seen = stats[comp].get(name)
                stats[comp][name] = x if seen is None else torch.maximum(seen, x)

            hooks.append(components[comp].get_submodule(name).register_forward_pre_hook(record))
    try:
        for i, prompt in enumerate(prompts):
            pipeline.run(pipeline.text_request(prompt, seed=i, steps=steps))
    finally:
        for hook in hooks:
            hook.remove()
    return stats


def _prompts(pipeline: Pipeline, count: int) -> list[str]:
    source = Path(pipeline.source) / "prompts.txt" if pipeline.source else None
    if source is not None and source.is_file():
        lines = [line.strip() for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
        if lines:
            return lines[:count]
    return list(CALIBRATION_PROMPTS[:count])


#: w8a8's SmoothQuant alpha where the model can be calibrated (it generates from text). Measured on
#: seedream-mini (benchmarks/RESULTS.md): 3.2 dB closer to the float model than plain w8a8, and the plain
#: kind lost one of 96 prompt cases that the smoothed one keeps.
DEFAULT_SMOOTH = 0.5


def resolve_smooth(pipeline: Pipeline, kind: str, smooth: float | None) -> float:
    """The smoothing alpha to use: `smooth` as given, else DEFAULT_SMOOTH for w8a8 on a model that can
    run calibration prompts (a text-to-image or text-to-video task) and 0 (off) otherwise."""
    if smooth is not None:
        return smooth
    tasks = getattr(getattr(pipeline, "spec", None), "tasks", ())
    return DEFAULT_SMOOTH if kind == "w8a8" and ("t2i" in tasks or "t2v" in tasks) else 0.0


def apply_quant(
    pipeline: Pipeline,
    kind: str,
    *,
    group: int = 64,
    smooth: float | None = None,
    parts: str = "all",
    calibration: int = 4,
    check_device: bool = True,
) -> Pipeline:
    """The weight accelerators: quantize the pipeline's components in place (see the module docstring).
    `smooth` None: w8a8 is smoothed at DEFAULT_SMOOTH where the model can be calibrated (resolve_smooth)."""
    if kind not in KINDS:
        raise AcceleratorError(f"unknown quantization kind '{kind}'; use one of {', '.join(KINDS)}")
    if group not in GROUPS:
        raise AcceleratorError(f"{kind}: group={group}; use one of {', '.join(map(str, GROUPS))}")
    if smooth is not None and not 0.0 <= smooth <= 1.0:
        raise AcceleratorError(f"{kind}: smooth={smooth} must be in [0, 1] (SmoothQuant's alpha; 0 is off)")
    if smooth and kind != "w8a8":
        raise AcceleratorError(f"{kind}: smooth applies to w8a8 only (it balances activations and weights)")
    if calibration < 1:
        raise AcceleratorError(
            f"{kind}: calibration={calibration}; give the number of prompts to measure activations on (>= 1)"
        )
    smooth = resolve_smooth(pipeline, kind, smooth)
    components = _components(pipeline, parts)
    for comp, module in components.items():
        done = quantized_layers(module)
        if done:
            raise AcceleratorError(
                f"{kind}: the model's {comp} is already quantized ({next(iter(done.values()))}); "
                "load the original model to quantize it another way"
            )
        if kind == "fp8" and check_device and (why := fp8_unsupported(_device(module))):
            raise AcceleratorError(f"{why}; use int8 or w8a8 here")
    sensitive = pipeline.sensitive_modules()
    act_max: dict[str, dict[str, torch.Tensor]] = {}
    if smooth:
        targets = {
            comp: [
                n for n, m in module.named_modules() if rule(n, m, kind, sensitive.get(comp, ())) == "w8a8"
            ]
            for comp, module in components.items()
        }
        act_max = calibrate_inputs(pipeline, targets, _prompts(pipeline, calibration))
    for comp, module in components.items():
        with torch.no_grad():
            quantize_module(
                module,
                kind,
                group=group,
                keep=sensitive.get(comp, ()),
                act_max=act_max.get(comp),
                alpha=smooth,
            )
    return pipeline


def restore(module: nn.Module, record: Mapping[str, Any]) -> nn.Module:
    """The accelerators' `restore`: swap in empty quantized layers (meta device) where the file's record
    says, so that `load_into` fills them from the file as it is."""
    try:
        layers = dict(record["layers"])
        options = dict(record.get("options", {}))
        version = int(record.get("format", FORMAT))
    except (KeyError, TypeError, ValueError):
        raise CorruptCheckpointError("quantized file: its record has no valid 'layers' map") from None
    if version > FORMAT:
        raise CorruptCheckpointError(
            f"quantized file of format {version}; this seed-quant reads format {FORMAT}: upgrade seed-quant"
        )
    kind = str(record.get("accelerator"))
    if kind == "fp8" and (why := fp8_unsupported(_fp8_device())):
        raise AcceleratorError(
            f"this model directory holds fp8 weights: {why}; quantize the original to int8"
        )
    for name, lk in layers.items():
        if lk not in LAYERS:
            raise CorruptCheckpointError(f"quantized file: layer '{name}' has unknown format '{lk}'")
        try:
            child = module.get_submodule(name)
        except AttributeError:
            raise CheckpointMismatchError(
                f"quantized file: layer '{name}' does not exist in the model (made for another model?)"
            ) from None
        new = LAYERS[lk].empty(child, group=int(options.get("group", 64)), smooth=bool(options.get("smooth")))
        _replace(module, name, new)
    return module


def _fp8_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def file_record(kind: str, options: Mapping[str, Any], layers: Mapping[str, str]) -> dict[str, Any]:
    return {"accelerator": kind, "format": FORMAT, "options": dict(options), "layers": dict(layers)}


def storage_dtypes(module: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The state dict of a (partly) quantized module as it is stored: codes, scales and zeros as they
    are; every other floating tensor in `dtype`."""
    fixed = {
        f"{name}.{buf}" if name else buf
        for name, child in module.named_modules()
        if isinstance(child, QuantLayer)
        for buf in child.fixed
    }
    out = {}
    for key, tensor in module.state_dict().items():
        if key not in fixed and tensor.dtype in CASTABLE:
            tensor = tensor.to(dtype)
        out[key] = tensor
    return out


def summary(pipeline: Pipeline) -> list[tuple[str, str, int]]:
    """(component, layer kind or 'kept', count) rows for a report."""
    rows = []
    for comp, module in pipeline.components().items():
        if not isinstance(module, nn.Module):
            continue
        kinds: dict[str, int] = {}
        for lk in quantized_layers(module).values():
            kinds[lk] = kinds.get(lk, 0) + 1
        kept = sum(
            1
            for _, m in module.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.Embedding)) and not isinstance(m, QuantLayer)
        )
        rows += [(comp, lk, n) for lk, n in sorted(kinds.items())] + [(comp, "kept", kept)]
    return rows


def directory_bytes(path: Path, pattern: str = "*.safetensors") -> int:
    return sum(f.stat().st_size for f in Path(path).rglob(pattern) if "students" not in f.parts)


_IGNORE_COPY: Callable[[str, list[str]], set[str]] = lambda d, names: {  # noqa: E731
    n for n in names if n in ("students", "__pycache__")
}


def _smoothing_as_done(pipeline: Pipeline, kind: str, options: Mapping[str, Any]) -> Mapping[str, Any]:
    """The options with W8A8's `smooth` as the layers were made: the file's record tells `restore` whether
    the layers carry smoothing factors, so a record that says otherwise would not load. Options without
    it (quantized on load at the default) get the alpha that default resolves to."""
    if kind != "w8a8":
        return options
    modules = [m for m in pipeline.components().values() if isinstance(m, nn.Module)]
    smoothed = any(getattr(layer, "smooth", None) is not None for m in modules for layer in m.modules())
    if "smooth" not in options:
        return {**options, "smooth": resolve_smooth(pipeline, kind, None) if smoothed else 0.0}
    if bool(options["smooth"]) != smoothed:
        state = "smoothed" if smoothed else "not smoothed"
        raise AcceleratorError(
            f"w8a8: the layers were {state} but the options say smooth={options['smooth']}; "
            "pass the smooth alpha they were quantized with"
        )
    return options


def save_quantized(
    pipeline: Pipeline,
    out: Path,
    kind: str,
    options: Mapping[str, Any],
    *,
    dtype: str = "bfloat16",
    force: bool = False,
) -> list[Path]:
    """Write a quantized model directory: the source directory's files (config, prompts, PARO plan, ...;
    not its distilled students, which are float models of their own) with each quantized component's
    `NAME.safetensors` replaced by its quantized state, and the accelerator recorded in config.json."""
    import shutil
    import tempfile

    from seed_core.files import check_writable
    from seed_core.weights import TRANSFORM_KEY, save_safetensors

    options = _smoothing_as_done(pipeline, kind, options)
    source = Path(pipeline.source) if pipeline.source else None
    if source is None or not (source / "config.json").is_file():
        raise AcceleratorError(
            f"model '{pipeline.spec.name}' has no model directory to copy (config.json); quantize a model "
            "that loads from a directory"
        )
    out = Path(out)
    if out.exists() and not force:
        raise AcceleratorError(f"{out} exists; pass --force to replace it")
    check_writable(out.parent / (out.name + ".tmp-check"), force=True)
    target = getattr(torch, dtype)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        shutil.copytree(source, tmp, dirs_exist_ok=True, ignore=_IGNORE_COPY)
        written = []
        for comp, module in pipeline.components().items():
            file = tmp / f"{comp}.safetensors"
            layers = quantized_layers(module) if isinstance(module, nn.Module) else {}
            if not layers:
                continue
            if not file.is_file():
                raise AcceleratorError(
                    f"{source}: component '{comp}' is not stored as {comp}.safetensors; seed quantize needs "
                    "that layout"
                )
            record = file_record(kind, options, layers)
            save_safetensors(
                storage_dtypes(module, target), file, metadata={TRANSFORM_KEY: json.dumps(record)}, force=True
            )
            written.append(out / file.name)
        config = json.loads((tmp / "config.json").read_text(encoding="utf-8"))
        config["baked_accelerators"] = [{"name": kind, "kind": "weights", "options": dict(options)}]
        config["quantization"] = {"kind": kind, **options, "from": pipeline.spec.name, "format": FORMAT}
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)  # the directory appears whole or not at all
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return written
