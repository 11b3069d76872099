"""The attention backends seed-attn registers into seed-core's dispatch (same signature as
`seed_core.attention.attention`), and the `paro` accelerator that routes a model's layers to them."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch

from seed_attn import ops
from seed_attn.paro import Calibrator, ParoRuntime, PlanError, active_layer, attention_layers, install
from seed_core.attention import current_attention_context, sdpa_attention
from seed_core.errors import AcceleratorError, AttentionInputError

BLOCK = 64


def _finite(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str) -> None:
    if not (torch.isfinite(q).all() and torch.isfinite(k).all() and torch.isfinite(v).all()):
        raise AttentionInputError(
            f"attention backend '{backend}' got NaN or inf in q/k/v; quantized attention cannot represent "
            "them (check the model's dtype, or use --accel without low-bit attention)"
        )


def int8_attention(q, k, v, *, mask=None, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """Dense attention, INT8 Q·Kᵀ (K smoothed, per-block scales), 16-bit P·V."""
    _finite(q, k, v, "int8")
    return ops.sparse_attention(q, k, v, block=BLOCK, qk_bits=8, scale=scale, mask=mask, is_causal=is_causal)


def int8_pv8_attention(q, k, v, *, mask=None, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """Dense attention, INT8 Q·Kᵀ and INT8 P·V."""
    _finite(q, k, v, "int8-pv8")
    return ops.sparse_attention(
        q, k, v, block=BLOCK, qk_bits=8, pv_bits=8, scale=scale, mask=mask, is_causal=is_causal
    )


def _paro(q, k, v, mask, is_causal, scale, backend: str):  # type: ignore[no-untyped-def]
    active = active_layer()
    context = current_attention_context()
    if active is None or not isinstance(active[0], ParoRuntime) or context is None:
        raise AttentionInputError(
            f"the '{backend}' backend with a plan runs under `--accel paro` on a backbone that declares its "
            "token layout (seed_core.attention.attention_context)"
        )
    if is_causal:
        raise AttentionInputError(f"the '{backend}' backend does not take causal attention")
    runtime, layer = active
    length = q.shape[2]
    if len(context.grids) > 1 or context.length != length:
        raise PlanError("PARO plans cover text-to-image calls only (no reference images); drop --accel paro")
    prepared = runtime.prepare(context.prefix, context.grids[0], length, q.device)
    plan = prepared.plan
    if layer >= plan.layers or plan.orders.shape[1] != q.shape[1]:
        raise PlanError(
            f"the PARO plan in {runtime.directory} is for {plan.layers} layers x {plan.orders.shape[1]} "
            f"heads (model {plan.model}); this call is layer {layer} with {q.shape[1]} heads: "
            "re-run `seed calibrate`"
        )
    group = prepared.slot_of(float(context.t.flatten()[0])) if context.t is not None else 0
    heads = q.shape[1]
    if k.shape[1] != heads:
        k, v = k.repeat_interleave(heads // k.shape[1], 1), v.repeat_interleave(heads // k.shape[1], 1)
    perm = prepared.perms[layer]
    if mask is not None:  # per-key masks follow the keys: any broadcastable shape -> (B', H, 1, L)
        mask = mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape))
        if mask.shape[2] != 1:
            raise AttentionInputError(f"the '{backend}' backend takes per-key masks only")
        mask = mask.expand(-1, heads, -1, -1)
    if runtime.kernel == "flex" or backend == "flex":
        qp, kp, vp = (ops.reorder(x, perm) for x in (q, k, v))
        if mask is not None:
            mask = mask.gather(3, perm[None, :, None, :].expand(mask.shape[0], -1, -1, -1))
        out = ops.flex_attention(qp, kp, vp, prepared.flex_mask(group, layer), scale=scale, mask=mask)
        return ops.reorder(out, prepared.inverse[layer])
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        # training with the masks in the loop (seed tune): the same masks, 16 bits, with a backward
        return ops.masked_attention(q, k, v, prepared.lists[group][layer], perm=perm, scale=scale, mask=mask)
    bits = runtime.bits or plan.bits
    pv_bits = runtime.pv_bits or bits
    if bits != 16 or pv_bits != 16:
        _finite(q, k, v, backend)
    # the order goes into the op: the Triton kernel reads and writes through it (no gather passes)
    return ops.sparse_attention(
        q, k, v, prepared.lists[group][layer], qk_bits=bits, pv_bits=pv_bits, scale=scale, mask=mask,
        allow_triton=runtime.kernel != "torch", perm=perm,
    )  # fmt: skip


def paro_attention(q, k, v, *, mask=None, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """PAROAttention: the calibrated per-head order, static block mask and bit width of the active plan."""
    return _paro(q, k, v, mask, is_causal, scale, "paro")


def flex_attention(q, k, v, *, mask=None, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """Block-sparse attention with FlexAttention: the active PARO plan's mask, or dense without a plan."""
    if active_layer() is not None:
        return _paro(q, k, v, mask, is_causal, scale, "flex")
    if is_causal:
        raise AttentionInputError("the 'flex' backend without a plan does not take causal attention")
    return ops.flex_attention(q, k, v, scale=scale, mask=mask)


def calibrate_attention(q, k, v, *, mask=None, is_causal=False, scale=None):  # type: ignore[no-untyped-def]
    """Records block statistics for `seed calibrate`, then computes exact attention (sdpa)."""
    active, context = active_layer(), current_attention_context()
    if active is not None and isinstance(active[0], Calibrator) and context is not None and not is_causal:
        calibrator, layer = active
        t = float(context.t.flatten()[0]) if context.t is not None else 1.0
        if len(context.grids) == 1 and context.length == q.shape[2]:
            calibrator.record(
                layer, t, q, k, mask, context.prefix, context.grids[0],
                1.0 / math.sqrt(q.shape[-1]) if scale is None else scale, v=v,
            )  # fmt: skip
    return sdpa_attention(q, k, v, mask=mask, is_causal=is_causal, scale=scale)


# --- the accelerator ------------------------------------------------------------------------------------


def backbone(pipeline: Any) -> torch.nn.Module:
    """The component whose attention PARO reorders: the diffusion transformer."""
    components = pipeline.components()
    for name in ("dit", "transformer", "backbone"):
        if isinstance(components.get(name), torch.nn.Module) and attention_layers(components[name]):
            return components[name]  # type: ignore[no-any-return]
    raise AcceleratorError(
        f"model '{pipeline.spec.name}' has no diffusion transformer that calls seed-core's attention, so "
        "attention accelerators cannot reach it"
    )


def apply_backend(pipeline: Any, name: str, pv_bits: int = 16) -> Any:
    """The `flex` and `int8-attn` accelerators: every attention layer of the backbone uses backend `name`."""
    from seed_core.attention import set_attention_backend

    if pv_bits not in (16, 8):
        raise AcceleratorError(f"int8-attn: pv_bits must be 16 or 8, got {pv_bits}")
    set_attention_backend(backbone(pipeline), "int8-pv8" if name == "int8" and pv_bits == 8 else name)
    return pipeline


def plan_directory(pipeline: Any, plan: str | None) -> Path:
    if plan:
        return Path(plan)
    if not pipeline.source:
        raise PlanError(f"paro: model '{pipeline.spec.name}' has no model directory; pass paro:plan=DIR")
    return Path(pipeline.source) / "paro"


def plan_defaults(directory: Path, key: str) -> Any:
    """The `key` ("density" or "bits") that every plan in `directory` was calibrated with, or None when
    they differ (each plan then brings its own) or a plan file cannot be read (its load reports it)."""
    import json

    values = set()
    for path in directory.glob("*.json"):
        try:
            values.add(json.loads(path.read_text()).get(key))
        except (OSError, ValueError, AttributeError):
            return None
    return values.pop() if len(values) == 1 else None


def parse_schedule(text: str) -> tuple[float, ...]:
    """'0.2/0.4' -> (0.2, 0.4): one density per calibrated sampling step, noise to clean."""
    try:
        densities = tuple(float(part) for part in text.split("/"))
    except ValueError:
        densities = ()
    if not densities or not all(0 < d <= 1 for d in densities):
        raise AcceleratorError(
            f"paro: schedule must be densities in (0, 1] separated by '/', noise to clean (0.2/0.4), "
            f"got {text!r}"
        )
    return densities


def apply_paro(
    pipeline: Any,
    density: float | None = None,
    bits: int | None = None,
    pv_bits: int | None = None,
    reorder: bool = True,
    kernel: str = "auto",
    plan: str | None = None,
    schedule: str | None = None,
    tuned: bool | None = None,
) -> Any:
    if density is not None and not 0 < density <= 1:
        raise AcceleratorError(f"paro: density must be in (0, 1], got {density}")
    densities = parse_schedule(schedule) if schedule else None
    if densities and density is not None:
        raise AcceleratorError("paro: give density or schedule, not both")
    for name, value in (("bits", bits), ("pv_bits", pv_bits)):
        if value is not None and value not in (16, 8, 4):
            raise AcceleratorError(f"paro: {name} must be 16, 8 or 4, got {value}")
    if kernel not in ("auto", "torch", "flex"):
        raise AcceleratorError(f"paro: kernel must be auto, torch or flex, got {kernel!r}")
    if kernel == "flex" and {bits, pv_bits} - {None, 16}:
        raise AcceleratorError("paro: kernel=flex computes in 16 bits; drop bits and pv_bits, or kernel=auto")
    directory = plan_directory(pipeline, plan)
    # how the user names this model again, for the calibrate command in error messages
    model = pipeline.spec.name if pipeline.source == pipeline.spec.weights else pipeline.source
    if not directory.is_dir() or not any(directory.glob("*.json")):
        raise PlanError(
            f"paro: no calibrated plan in {directory}; "
            f"run `seed calibrate -m {model} --accel paro --size WxH` first"
        )
    files = sorted(directory.glob(f"*{TUNED_SUFFIX}")) if tuned is not False else []
    if tuned and not files:
        raise AcceleratorError(
            f"paro: tuned=true, but {directory} holds no backbone tuned for its plan (*{TUNED_SUFFIX}); "
            "make one with seed tune, or drop tuned=true"
        )
    done = [a.name for a in pipeline.accelerators if a.kind in ("steps", "weights")]
    if files and done:  # a copy of the model's backbone cannot stand in for a student's or quantized one
        if tuned:
            raise AcceleratorError(
                f"paro: tuned=true: the plan's tuned backbone is a copy of the model's own, not of --accel "
                f"{done[0]}'s; drop tuned=true to run the plan on it without the copy"
            )
        files = []
    # what the user left to the plans: when every plan in the directory has the same default, it is this
    # run's value, and the accelerator's record (an output's metadata) names it; tuned backbones bring the
    # masks they were tuned for, where every plan has one (a plan without runs the model's own backbone)
    plans = {p.stem for p in directory.glob("*.json")}
    records = {f: tuned_record(f) for f in files}  # read once: the defaults here, the routes below
    fitted = (
        tuned_defaults(list(records.values()))
        if plans <= {f.name[: -len(TUNED_SUFFIX)] for f in files}
        else {}
    )
    defaults = {key: plan_defaults(directory, key) for key in ("density", "bits")}
    if fitted and density is None and not densities:
        density, densities = fitted["density"], fitted["schedule"]
    density = defaults["density"] if density is None else density
    bits = (fitted or defaults)["bits"] if bits is None else bits
    runtime = ParoRuntime(directory, str(model), density, bits, pv_bits, reorder, kernel, densities)
    steps = "/".join(map(str, densities)) if densities else None
    chosen = (("schedule", steps), ("bits", bits)) if densities else (("density", density), ("bits", bits))
    pipeline.chosen_options = {k: v for k, v in chosen if v is not None} | {"tuned": bool(files)}
    net = backbone(pipeline)
    # a tuned backbone is a copy made before the layers are routed (the routing wraps their forwards)
    copies = {file: copy.deepcopy(net) for file in files}
    install(net, runtime, "flex" if kernel == "flex" else "paro")
    if files:
        route_tuned(pipeline, net, copies, records, runtime, "flex" if kernel == "flex" else "paro")
    pipeline.paro = runtime
    return pipeline


TUNED_SUFFIX = ".backbone.safetensors"  # beside a plan: the backbone `seed tune` fitted to it


def tuned_record(file: Path) -> dict[str, Any]:
    """The `seed_paro_tuned` record in a tuned backbone's metadata ({} when it has none)."""
    import json

    from seed_core.weights import read_metadata

    try:
        record = json.loads(read_metadata(file).get("seed_paro_tuned", "{}"))
    except json.JSONDecodeError:
        raise PlanError(
            f"{file}: its 'seed_paro_tuned' record is not valid JSON; remake it with seed tune"
        ) from None
    return record if isinstance(record, dict) else {}


def tuned_defaults(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The masks and bits the tuned backbones were fitted with (their records), when they agree ({}
    otherwise): a run that names none runs these, since at other masks a tuned copy can be worse than the
    model's own."""
    found = {(r.get("density"), tuple(r.get("schedule") or ()), r.get("bits")) for r in records}
    if len(found) != 1:
        return {}
    density, schedule, bits = found.pop()
    if bits is None or (density is None and not schedule):
        return {}
    return {"density": density, "schedule": schedule or None, "bits": bits}


def route_tuned(pipeline: Any, net: torch.nn.Module, copies: dict[Path, torch.nn.Module],
                records: dict[Path, dict[str, Any]], runtime: Any, backend: str) -> None:  # fmt: skip
    """Calls whose latent size is a tuned backbone's go to that backbone (with the plan installed);
    the others (a draft at exact attention) stay with the model's own."""

    from seed_core.delta import load_weights
    from seed_core.errors import CheckpointMismatchError, CheckpointNotFoundError
    from seed_core.weights import load_into

    routes: dict[tuple[int, ...], torch.nn.Module] = {}
    for file, tuned in copies.items():
        record = records[file]
        if "latent" not in record:
            raise PlanError(
                f"{file}: no 'seed_paro_tuned' record with the latent size; remake it with seed tune"
            )
        tuned_for = (record.get("density"), tuple(record.get("schedule") or ()) or None)
        # a schedule names the masks by itself (the density beside it is not used)
        ran = (runtime.density, runtime.schedule)
        same = tuned_for[1] == ran[1] if tuned_for[1] else tuned_for == ran
        if "density" in record and not same:
            masks = (
                f"schedule={'/'.join(map(str, tuned_for[1]))}" if tuned_for[1] else f"density={tuned_for[0]}"
            )
            ops.warn_once(
                f"paro: {file.name} was tuned for the masks of {masks}; at other masks it can be worse than "
                "the model's own backbone (density 0.2 on a copy tuned at 0.3: 20 of 96 prompts right)"
            )
        try:  # a delta file: the difference from the model's own backbone
            state = load_weights(file, pipeline.source)
        except (CheckpointMismatchError, CheckpointNotFoundError) as exc:
            raise PlanError(f"{exc} (or run the plan without it: paro:tuned=false)") from None
        load_into(tuned, state, source=str(file))
        first = next(net.parameters())
        tuned.to(device=first.device, dtype=first.dtype).eval()  # assigned tensors come from the CPU
        install(tuned, runtime, backend)
        routes[tuple(record["latent"])] = tuned
    original = net.forward

    def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return routes.get(tuple(x.shape[-2:]), original)(x, *args, **kwargs)

    net.forward = forward  # type: ignore[method-assign]  # an instance attribute: the model's own stays
    pipeline.paro_tuned = {tuple(k): str(f) for k, f in zip(routes, copies, strict=True)}
