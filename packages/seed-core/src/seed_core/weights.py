"""Weights IO: safetensors (sharded, atomic, dtype cast), safe `.pt` loading, meta-device builds.

Models are built on the meta device (no memory, no init time) and their weights are loaded with
``assign=True``, so a large model is materialised once, directly from the file. Every problem with a file is
a `CheckpointError` whose one-line message names the file and the key.
"""

from __future__ import annotations

import contextlib
import json
import math
import pickle
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from seed_core.errors import (
    CheckpointFormatError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
)
from seed_core.files import atomic_path, check_writable

if TYPE_CHECKING:
    from seed_core.registry import Registry

StateDict = dict[str, torch.Tensor]
M = TypeVar("M", bound=nn.Module)
INDEX_SUFFIX = ".safetensors.index.json"
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def _dtype(value: torch.dtype | str | None) -> torch.dtype | None:
    if value is None or isinstance(value, torch.dtype):
        return value
    dtype = getattr(torch, str(value), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {value!r} (try float32, float16, bfloat16)")
    return dtype


#: the dtypes a dtype cast applies to; integer and 8-bit float tensors (quantized weights) are kept
CASTABLE = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def cast_state_dict(state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype | str | None) -> StateDict:
    """Cast 16/32/64-bit floating tensors to `dtype`; integer and float8 tensors (quantized weights,
    indices) are kept."""
    target = _dtype(dtype)
    if target is None:
        return dict(state_dict)
    return {k: v.to(target) if v.dtype in CASTABLE else v for k, v in state_dict.items()}


def _shard_plan(state_dict: Mapping[str, torch.Tensor], max_shard_bytes: int) -> list[list[str]]:
    shards: list[list[str]] = [[]]
    size = 0
    for key, tensor in state_dict.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(key)
        size += nbytes
    return shards


def save_safetensors(
    state_dict: Mapping[str, torch.Tensor],
    path: str | Path,
    *,
    metadata: Mapping[str, str] | None = None,
    dtype: torch.dtype | str | None = None,
    max_shard_bytes: int | None = None,
    force: bool = False,
) -> list[Path]:
    """Write `state_dict` to `path` (a `.safetensors` file), atomically; return the files written.

    With `max_shard_bytes` and a larger state dict, writes `NAME-00001-of-0000N.safetensors` shards next to
    `path` plus `NAME.safetensors.index.json` (the Hugging Face layout) and returns the index last.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: weights files must end in .safetensors")
    tensors = cast_state_dict(state_dict, dtype)
    seen: set[int] = set()
    for key, t in tensors.items():  # safetensors refuses shared or strided storage
        ptr = t.untyped_storage().data_ptr() if t.device.type != "meta" else id(t)
        t = t.detach().to("cpu").contiguous()
        tensors[key] = t.clone() if ptr in seen else t
        seen.add(ptr)
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    stem = path.name[: -len(".safetensors")]
    index = path.with_name(stem + INDEX_SUFFIX)
    if max_shard_bytes is None or total <= max_shard_bytes:
        with atomic_path(path, force=force) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        _remove_stale_shards(index, keep=set())  # an older sharded save must not shadow this file
        return [path]

    plan = _shard_plan(tensors, max_shard_bytes)
    names = [f"{stem}-{i + 1:05d}-of-{len(plan):05d}.safetensors" for i in range(len(plan))]
    for target in [*(path.with_name(n) for n in names), index, path]:
        check_writable(target, force)
    written = []
    for name, keys in zip(names, plan, strict=True):
        with atomic_path(path.with_name(name), force=True) as tmp:
            save_file({k: tensors[k] for k in keys}, str(tmp), metadata=meta)
        written.append(path.with_name(name))
    weight_map = {k: name for name, keys in zip(names, plan, strict=True) for k in keys}
    body = {"metadata": {**meta, "total_size": total}, "weight_map": weight_map}
    _remove_stale_shards(index, keep=set(names))
    with atomic_path(index, force=True) as tmp:  # the index goes last: it is what makes the set valid
        tmp.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    path.unlink(missing_ok=True)  # a single-file save of the same name would be ambiguous next to the index
    return [*written, index]


def _remove_stale_shards(index: Path, keep: set[str]) -> None:
    """Delete an older index and the shards it lists (except `keep`): they belong to a replaced save."""
    if not index.exists():
        return
    try:
        old = set(json.loads(index.read_text())["weight_map"].values())
    except (OSError, ValueError, KeyError, TypeError):
        old = set()
    for name in old - keep:
        (index.parent / name).unlink(missing_ok=True)
    if not keep:
        index.unlink()


def _resolve(path: Path) -> list[Path]:
    """The weight files that `path` (a file, an index or a model directory) stands for."""
    if not path.exists():
        raise CheckpointNotFoundError(f"{path}: no such file or directory")
    if path.is_dir():
        indexes = sorted(path.glob("*" + INDEX_SUFFIX))
        files = sorted(path.glob("*.safetensors"))
        if len(indexes) == 1:
            return _resolve(indexes[0])
        if len(files) == 1:
            return files
        if not files:
            raise CheckpointNotFoundError(f"{path}: no .safetensors file in this directory")
        raise CheckpointNotFoundError(
            f"{path}: {len(files)} .safetensors files and no index; name the file to load"
        )
    if path.name.endswith(INDEX_SUFFIX):
        try:
            weight_map = json.loads(path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise CorruptCheckpointError(f"{path}: not a valid safetensors index (no weight_map)") from None
        shards = [path.parent / name for name in sorted(set(weight_map.values()))]
        missing = [s for s in shards if not s.exists()]
        if missing:
            raise CheckpointNotFoundError(f"{path}: shard {missing[0].name} listed in the index is missing")
        return shards
    return [path]


def load_safetensors(
    path: str | Path, *, dtype: torch.dtype | str | None = None, device: str | torch.device = "cpu"
) -> StateDict:
    """Read a `.safetensors` file, a sharded index, or a model directory into one state dict."""
    state: StateDict = {}
    for file in _resolve(Path(path)):
        with _readable(file):
            state.update(load_file(str(file), device=str(device)))
    return cast_state_dict(state, dtype)


@contextlib.contextmanager
def _readable(file: Path) -> Iterator[None]:
    """Turn the errors of reading a safetensors file into one-line `CorruptCheckpointError`s."""
    try:
        yield
    except SafetensorError as exc:
        raise CorruptCheckpointError(
            f"{file}: corrupt or truncated safetensors file ({exc}); re-download or re-save it"
        ) from None
    except OSError as exc:
        raise CorruptCheckpointError(f"{file}: cannot read ({exc.strerror or exc})") from None


def load_torch_checkpoint(path: str | Path, *, dtype: torch.dtype | str | None = None) -> StateDict:
    """Read a `.pt/.pth/.bin/.ckpt` file with `weights_only=True`: tensors only, never arbitrary code."""
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFoundError(f"{path}: no such file")
    if path.is_file():
        with open(path, "rb") as fh:
            head = fh.read(4)
        # torch.save writes a zip archive (since torch 1.6) or, before, a pickle (protocol byte 0x80)
        if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":
            raise CorruptCheckpointError(
                f"{path}: not a PyTorch checkpoint (neither the zip archive nor the pickle torch.save writes)"
            )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe pickle"
        raise CorruptCheckpointError(
            f"{path}: refused, it holds more than tensors ({first}); convert it to safetensors where you "
            "trust the file"
        ) from None
    except Exception as exc:  # an untrusted file can fail the reader anywhere (KeyError, struct.error, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CorruptCheckpointError(f"{path}: corrupt or truncated checkpoint ({first})") from None
    if isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model", "module", "ema"):  # common training-checkpoint wrappers
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CorruptCheckpointError(f"{path}: not a state dict of tensors")
    return cast_state_dict(obj, dtype)


#: safetensors metadata key under which a weights accelerator (seed-quant) records how it transformed
#: the tensors of a file, so that `load_component` can restore them without redoing the work
TRANSFORM_KEY = "seed_accelerator"


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a `.safetensors` file (of the first shard of an index)."""
    file = _resolve(Path(path))[0]
    with _readable(file), safe_open(str(file), "pt") as handle:
        return dict(handle.metadata() or {})


def load_component(
    module: M,
    path: str | Path,
    *,
    dtype: torch.dtype | str | None = None,
    registry: Registry | None = None,
) -> M:
    """Fill `module`, built on the meta device, from the safetensors file at `path`.

    A file written by a weights accelerator (a quantized checkpoint: its metadata names the accelerator)
    is first handed to that accelerator's `restore`, which swaps in its own layers, so that nothing is
    quantized again. `dtype` is the dtype of the module's floating tensors (default: as built).
    """
    path = Path(path)
    state = load_safetensors(path)
    if dtype is not None:
        module = module.to(_dtype(dtype))  # free on the meta device; the load then casts to it
    raw = read_metadata(path).get(TRANSFORM_KEY)
    if raw is not None:
        try:
            record = json.loads(raw)
            name = record["accelerator"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise CorruptCheckpointError(
                f"{path}: unreadable '{TRANSFORM_KEY}' metadata; re-create the file with `seed quantize`"
            ) from None
        if registry is None:
            from seed_core.registry import get_registry

            registry = get_registry()
        try:
            spec = registry.accelerators.get(name)
        except KeyError:
            raise CheckpointFormatError(
                f"{path}: written by the accelerator '{name}', which is not installed (install the "
                "package that provides it, e.g. seed-quant)"
            ) from None
        if spec.restore is None:
            raise CheckpointFormatError(f"{path}: accelerator '{name}' cannot restore saved weights")
        module = spec.restore(module, record) or module
    load_into(module, state, source=str(path))
    return module


def list_tensors(path: str | Path) -> list[tuple[str, list[int], str]]:
    """(name, shape, dtype) of each tensor of a checkpoint, sorted by name, without reading the values
    where the format allows (safetensors headers)."""
    path = Path(path)
    if path.suffix in TORCH_SUFFIXES:
        state = load_torch_checkpoint(path)
        return [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in sorted(state.items())]
    rows = []
    for file in _resolve(path):
        with _readable(file), safe_open(str(file), "pt") as handle:
            for key in handle.keys():
                piece = handle.get_slice(key)
                rows.append(
                    (
                        key,
                        list(piece.get_shape()),
                        _SAFETENSORS_DTYPES.get(piece.get_dtype(), piece.get_dtype()),
                    )
                )
    return sorted(rows)


_SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


def read_state_dict(path: str | Path, *, dtype: torch.dtype | str | None = None) -> StateDict:
    """Read any supported checkpoint by its suffix (safetensors by default)."""
    if Path(path).suffix in TORCH_SUFFIXES:
        return load_torch_checkpoint(path, dtype=dtype)
    return load_safetensors(path, dtype=dtype)


def adapt_state_dict(
    state_dict: StateDict, adapter: str | None = None, registry: Registry | None = None
) -> tuple[StateDict, str | None]:
    """Convert a foreign layout with the named adapter, or the first registered one that detects it.

    Returns the state dict and the adapter used (None: already native / nothing detected).
    """
    if registry is None:
        from seed_core.registry import get_registry

        registry = get_registry()
    if adapter is not None:
        spec = registry.weight_adapters.get(adapter)
        return spec.convert(state_dict), spec.name
    keys = frozenset(state_dict)
    for spec in registry.weight_adapters:
        if spec.detect(keys):
            return spec.convert(state_dict), spec.name
    return state_dict, None


def _listed(keys: Iterable[str], limit: int = 5) -> str:
    keys = sorted(keys)
    shown = ", ".join(f"'{k}'" for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


@dataclass
class LoadReport:
    missing: list[str]
    unexpected: list[str]


def _tied_groups(model: nn.Module) -> list[list[str]]:
    """Names that share one parameter (tied weights), as groups of two or more."""
    groups: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def _set_tensor(model: nn.Module, name: str, value: torch.Tensor) -> None:
    module_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(module_name) if module_name else model, attr, value)


def load_into(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    strict: bool = True,
    source: str = "checkpoint",
) -> LoadReport:
    """Load `state_dict` into `model` with ``assign=True`` after checking every key and shape.

    Floating tensors are cast to the dtype of the model's tensor they replace (build the model in the
    dtype you want). Shape mismatches are always an error; missing / unexpected keys when `strict`. Tied
    weights stay tied. Non-persistent buffers left on the meta device are rebuilt by the owning module's
    `init_buffers()` when it has one.
    """
    expected = model.state_dict(keep_vars=True)
    ties = _tied_groups(model)
    tied_aliases = {name for group in ties for name in group[1:]}
    for key, tensor in state_dict.items():
        if key in expected and tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointMismatchError(
                f"{source}: key '{key}' has shape {tuple(tensor.shape)} but the model expects "
                f"{tuple(expected[key].shape)} (wrong preset or model?)"
            )
    missing = sorted(set(expected) - set(state_dict) - tied_aliases)
    unexpected = sorted(set(state_dict) - set(expected))
    if strict and missing:
        raise CheckpointMismatchError(
            f"{source}: missing {len(missing)} key(s) the model needs: {_listed(missing)}"
        )
    if strict and unexpected:
        raise CheckpointMismatchError(
            f"{source}: {len(unexpected)} unexpected key(s) the model does not have: {_listed(unexpected)}"
        )
    state = {}
    for key, tensor in state_dict.items():
        target = expected.get(key)
        if target is not None and tensor.dtype in CASTABLE and target.dtype in CASTABLE:
            tensor = tensor.to(target.dtype)
        elif target is not None and tensor.dtype != target.dtype:
            raise CheckpointMismatchError(
                f"{source}: key '{key}' is {str(tensor.dtype).removeprefix('torch.')} but the model expects "
                f"{str(target.dtype).removeprefix('torch.')} (a quantized file for another format?)"
            )
        state[key] = tensor
    for group in ties:  # a checkpoint may hold the tied tensor under any of its names
        present = next((n for n in group if n in state), None)
        for name in group:
            if present is not None:
                state.setdefault(name, state[present])
    model.load_state_dict(state, strict=False, assign=True)
    for group in ties:
        shared = model.get_parameter(group[0])
        for name in group[1:]:
            _set_tensor(model, name, shared)
    for module in model.modules():
        init = getattr(module, "init_buffers", None)
        if callable(init) and any(b.is_meta for b in module.buffers(recurse=False)):
            init()
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise CheckpointMismatchError(
            f"{source}: {_listed(left)} still on the meta device after loading (not in the checkpoint; "
            "a non-persistent buffer needs its module to define init_buffers())"
        )
    return LoadReport(missing, unexpected)


_INIT_FUNCTIONS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "sparse_",
)


@contextlib.contextmanager
def skipped_init() -> Iterator[None]:
    """`torch.nn.init` switched off within the block: for modules whose parameters hold no values (meta
    or fake tensors), whose initialisation goes through torch's reference ops, whose first use imports
    sympy and dynamo (about 4 s), and for a 7B model costs seconds more."""
    saved = {name: getattr(torch.nn.init, name) for name in _INIT_FUNCTIONS if hasattr(torch.nn.init, name)}
    try:
        for name in saved:
            setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.nn.init, name, fn)


def build_on_meta(factory: Callable[[], M]) -> M:
    """Build a module on the meta device: parameters have shapes but no memory and no init cost."""
    with skipped_init(), torch.device("meta"):
        return factory()


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (works on the meta device)."""
    return sum(p.numel() for p in model.parameters())


def load_model(
    factory: Callable[[], M],
    path: str | Path,
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device = "cpu",
    strict: bool = True,
    adapter: str | None = None,
    adapt: bool = False,
) -> M:
    """Build `factory()` on the meta device and fill it from the checkpoint at `path`.

    The model gets `dtype` (default: the dtype `factory()` builds in), whatever dtypes the file holds.

    With `adapt` (or a named `adapter`), a foreign layout is converted by a registered weight adapter first.
    """
    state = read_state_dict(path)
    if adapt or adapter is not None:
        state, _ = adapt_state_dict(state, adapter)
    model = build_on_meta(factory)
    if dtype is not None:
        model = model.to(_dtype(dtype))  # free on the meta device; the load then casts to it
    load_into(model, state, strict=strict, source=str(path))
    return model.to(device)


def human_count(n: int) -> str:
    """1234567 -> '1.23M'."""
    if n < 1000:
        return str(n)
    exp = min(int(math.log10(n) // 3), 4)
    return f"{n / 10 ** (3 * exp):.3g}{' KMBT'[exp]}"
