"""Weights stored as a low-bit difference from the weights they were made from (delta files).

A distilled student, or a backbone fitted to a sparse-attention plan, differs from the model it started as
by a few percent of the weights' norm (the shipped 4-step student of seedream-mini: 2.8%). Its difference
in 8 bits (one scale per row) or 4 bits (groups of 64 along a row) is then far more exact than the weights
themselves in 8 bits, at a half or a quarter of the float16 file. The file names its base by a hash of the
base file's tensors, and is refused against any other base.

Layout (one safetensors file): for each floating tensor of two or more dimensions that the base holds with
the same shape, `KEY#q8` (int8 codes, the tensor's rows flattened) and `KEY#s` (float16 scales per row),
or `KEY#q4`, `KEY#s`, `KEY#z` (`seed_core.lowbit`'s packed int4 with scales and zero points per group);
every other tensor whole, as `KEY` (float16). Metadata `seed_delta`: {"base": hash, "base_file": the base
file's name, "bits": 8 | 4, "group": 64}.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import torch

from seed_core import lowbit
from seed_core.errors import CheckpointMismatchError, CheckpointNotFoundError, CorruptCheckpointError
from seed_core.weights import StateDict, load_safetensors, read_metadata, save_safetensors

DELTA_KEY = "seed_delta"
BITS = (8, 4)
BASE_FILE = "dit.safetensors"  # the backbone file of a model directory, the usual base


def resolve_base(base: str | Path, name: str = BASE_FILE) -> Path:
    """A base given as its file, or as the directory that holds it under `name`."""
    base = Path(base)
    return base / name if base.is_dir() else base


def base_hash(state: Mapping[str, torch.Tensor]) -> str:
    """A hash of tensors as stored (name, dtype, shape and bytes, in name order): 16 hex digits."""
    digest = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().to("cpu").contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def save_delta(
    state: Mapping[str, torch.Tensor],
    base_file: str | Path,
    path: str | Path,
    *,
    bits: int = 8,
    group: int = 64,
    metadata: Mapping[str, str] | None = None,
    force: bool = False,
) -> Path:
    """Write `state` as its difference from the weights in `base_file` (or its model directory's
    dit.safetensors), in `bits` bits (with `metadata` besides the delta's own record); return the path."""
    if bits not in BITS:
        raise ValueError(f"a delta file stores 8 or 4 bits, not {bits}")
    base_file = resolve_base(base_file)
    base = load_safetensors(base_file)
    tensors: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        ref = base.get(key)
        value = value.detach().to("cpu")
        if not value.is_floating_point():  # counters, masks, codes: as they are
            tensors[key] = value
            continue
        if ref is None or ref.shape != value.shape or value.ndim < 2 or not value.numel():
            tensors[key] = value.to(torch.float16)  # new, reshaped or small: whole
            continue
        diff = _rows(value.float() - ref.float())
        if bits == 4 and diff.shape[1] % 2 == 0:
            packed, scale, zero = lowbit.quantize_int4(diff, group)
            tensors |= {f"{key}#q4": packed, f"{key}#s": scale, f"{key}#z": zero}
        else:  # 8 bits (or a row of odd length, which int4 cannot pack)
            codes, scale = lowbit.quantize_rows_int8(diff, scale_dtype=torch.float16)
            tensors |= {f"{key}#q8": codes, f"{key}#s": scale}
    record = {"base": base_hash(base), "base_file": base_file.name, "bits": bits, "group": group}
    save_safetensors(tensors, path, metadata={**(metadata or {}), DELTA_KEY: json.dumps(record)}, force=force)
    return Path(path)


def delta_record(path: str | Path) -> dict[str, object] | None:
    """The `seed_delta` record of a weights file, or None for a file of plain weights."""
    raw = read_metadata(path).get(DELTA_KEY)
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except json.JSONDecodeError:
        record = None
    if not isinstance(record, dict) or not {"base", "bits", "group"} <= record.keys():
        raise CorruptCheckpointError(f"{path}: its '{DELTA_KEY}' record is not valid; remake the file")
    return record


def load_delta(path: str | Path, base: str | Path | None) -> StateDict:
    """The float32 weights a delta file stands for: its base's plus the stored difference. `base` is the
    base file, or the directory that holds it under the name the delta file records.

    Refused with one line when the base is missing or is not the one the file was made from."""
    record = delta_record(path)
    if record is None:
        raise CorruptCheckpointError(f"{path}: not a delta file (no '{DELTA_KEY}' record)")
    return _expand(Path(path), record, base)


def _expand(path: Path, record: dict[str, object], base: str | Path | None) -> StateDict:
    base_name = str(record.get("base_file", BASE_FILE))
    base_file = resolve_base(base, base_name) if base is not None else None
    if base_file is None or not base_file.is_file():
        where = f"at {base_file}" if base_file is not None else "known here"
        raise CheckpointNotFoundError(
            f"{path}: stored as a difference from {base_name}, which is not {where}; load it with the "
            "model it was made from"
        )
    base_state = load_safetensors(base_file)
    found = base_hash(base_state)
    if found != record["base"]:
        raise CheckpointMismatchError(
            f"{path}: made from another {base_name} than {base_file} (hash {record['base']}, this one "
            f"{found}, or the same weights stored in another dtype); use it with the model it was made "
            "from, or remake it"
        )
    stored = load_safetensors(path)
    group = int(record["group"])  # type: ignore[call-overload]
    state: StateDict = {}
    for key, value in stored.items():
        if "#" not in key:
            state[key] = value.float() if value.is_floating_point() else value
            continue
        name, kind = key.rsplit("#", 1)
        if kind not in ("q8", "q4"):
            continue  # scales and zero points, read with their codes
        ref = base_state.get(name)
        scale = stored.get(f"{name}#s")
        zero = stored.get(f"{name}#z") if kind == "q4" else None
        if ref is None or scale is None or (kind == "q4" and zero is None):
            missing = "base tensor" if ref is None else "scales" if scale is None else "zero points"
            raise CorruptCheckpointError(f"{path}: tensor '{name}' is missing its {missing}; remake the file")
        rows = _rows(ref)
        try:
            if kind == "q8":
                diff = value.float() * scale.float()[:, None]
            else:
                assert zero is not None
                diff = lowbit.dequantize_int4(value, scale, zero, group, torch.float32)
            if diff.shape != rows.shape:
                raise RuntimeError(f"shape {tuple(diff.shape)} against {tuple(rows.shape)}")
        except (RuntimeError, IndexError) as exc:
            raise CorruptCheckpointError(f"{path}: tensor '{name}' does not fit its base ({exc})") from None
        state[name] = (rows.float() + diff).view(ref.shape)
    return state


def load_weights(path: str | Path, base: str | Path | None = None) -> StateDict:
    """A weights file as a state dict: plain weights as stored, a delta file added to its base's (`base`:
    the base file or its directory, as for `load_delta`)."""
    record = delta_record(path)
    return load_safetensors(path) if record is None else _expand(Path(path), record, base)
