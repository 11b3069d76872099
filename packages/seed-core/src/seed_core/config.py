"""Flat frozen-dataclass configs with a JSON round trip and named presets.

@dataclass(frozen=True)
class DiTConfig(Config):
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"tiny": {"depth": 2, "width": 64}}
    depth: int = 12
    width: int = 768

DiTConfig.preset("tiny", depth=3)                  # a preset with an override
DiTConfig.from_json(path).to_json(other_path)     # unknown keys and wrong types are refused by name
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar, Union

from seed_core.errors import ConfigError, UnknownPresetError, did_you_mean

C = TypeVar("C", bound="Config")


def _coerce(cls_name: str, key: str, hint: Any, value: Any) -> Any:
    """Turn a JSON value back into the field's declared type, or say why it can't."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(cls_name, key, arg, value)
            except ConfigError:
                continue
        raise ConfigError(f"{cls_name}.{key}: {value!r} does not fit {hint}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{cls_name}.{key}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(cls_name, key, args[0], v) for v in value)
        if args and len(args) != len(value):
            raise ConfigError(f"{cls_name}.{key}: expected {len(args)} items, got {len(value)}")
        return (
            tuple(_coerce(cls_name, key, a, v) for a, v in zip(args, value, strict=True))
            if args
            else tuple(value)
        )
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            choices = ", ".join(repr(a) for a in typing.get_args(hint))
            raise ConfigError(f"{cls_name}.{key}: {value!r} is not one of {choices}")
        return value
    if origin is list or hint is list:
        if not isinstance(value, list):
            raise ConfigError(f"{cls_name}.{key}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        return [_coerce(cls_name, key, args[0], v) for v in value] if args else list(value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{cls_name}.{key}: expected an object, got {value!r}")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(hint, type) and origin is None:  # (on 3.10, list[int] also passes isinstance(type))
        if hint is not bool and isinstance(value, bool) and hint in (int, float):
            raise ConfigError(f"{cls_name}.{key}: expected {hint.__name__}, got {value!r}")
        if not isinstance(value, hint):
            raise ConfigError(f"{cls_name}.{key}: expected {hint.__name__}, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Config:
    """Base for configs: subclass it with `@dataclass(frozen=True)` and plain fields."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def preset(cls: type[C], name: str, **overrides: Any) -> C:
        """The named preset, with `overrides` applied."""
        if name not in cls.PRESETS:
            raise UnknownPresetError(name, cls.PRESETS)
        return cls.from_dict({**cls.PRESETS[name], **overrides})

    @classmethod
    def preset_names(cls) -> list[str]:
        return list(cls.PRESETS)

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            if not f.init:  # derived fields are recomputed on load, not stored
                continue
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], *, strict: bool = True) -> C:
        """Build from a dict; unknown keys are an error when `strict`, else ignored."""
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        kwargs = {}
        for key, value in data.items():
            if key not in names:
                if strict:
                    raise ConfigError(f"{cls.__name__} has no field '{key}'." + did_you_mean(key, names))
                continue
            kwargs[key] = _coerce(cls.__name__, key, hints[key], value)
        try:
            return cls(**kwargs)
        except TypeError as exc:  # a required field is missing
            raise ConfigError(f"{cls.__name__}: {exc}") from None

    def to_json(self, path: str | Path | None = None, *, extra: dict[str, Any] | None = None) -> str:
        """The config as JSON (with `extra` keys, e.g. the model family); written atomically if `path`."""
        text = json.dumps({**(extra or {}), **self.to_dict()}, indent=2, sort_keys=True) + "\n"
        if path is not None:
            from seed_core.files import atomic_write_bytes

            atomic_write_bytes(Path(path), text.encode(), force=True)
        return text

    @classmethod
    def from_json(cls: type[C], source: str | Path, *, strict: bool = True) -> C:
        """From a JSON file path, or a JSON string starting with '{'."""
        text = str(source)
        where = "JSON text"
        if not text.lstrip().startswith("{"):
            where = str(source)
            try:
                text = Path(source).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(
                    f"cannot read config {source}: {getattr(exc, 'strerror', None) or exc}"
                ) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a JSON object")
        return cls.from_dict(data, strict=strict)

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)
