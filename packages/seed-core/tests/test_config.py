from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass
from typing import Any, ClassVar, Literal

import pytest

from seed_core.config import Config
from seed_core.errors import ConfigError, UnknownPresetError


@dataclass(frozen=True)
class NetConfig(Config):
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"depth": 2, "width": 32, "patch": (1, 2, 2)},
        "large": {"depth": 38, "width": 3072},
    }
    depth: int = 12
    width: int = 768
    mlp_ratio: float = 4.0
    qk_norm: bool = True
    patch: tuple[int, int, int] = (1, 2, 2)
    axes: tuple[int, ...] = (16, 56, 56)
    text_encoder: str | None = None
    ids: list[int] | None = None
    mode: Literal["kl", "plain"] = "kl"


def test_json_round_trip(tmp_path):
    cfg = NetConfig.preset("tiny", text_encoder="t5", axes=(8, 8), ids=[3, 4], mode="plain")
    path = tmp_path / "config.json"
    cfg.to_json(path)
    again = NetConfig.from_json(path)
    assert again == cfg
    assert isinstance(again.patch, tuple) and again.axes == (8, 8)
    assert NetConfig.from_json(cfg.to_json()) == cfg


def test_presets():
    assert NetConfig.preset_names() == ["tiny", "large"]
    assert NetConfig.preset("large").depth == 38
    assert NetConfig.preset("tiny", depth=3).depth == 3
    with pytest.raises(UnknownPresetError, match="Did you mean 'tiny'"):
        NetConfig.preset("tiyn")


def test_frozen():
    with pytest.raises(FrozenInstanceError):
        NetConfig().depth = 3  # type: ignore[misc]
    assert NetConfig().replace(depth=3).depth == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"detph": 3}, "NetConfig has no field 'detph'. Did you mean 'depth'"),
        ({"depth": "3"}, "NetConfig.depth: expected int, got '3'"),
        ({"depth": True}, "NetConfig.depth: expected int, got True"),
        ({"patch": [1, 2]}, "NetConfig.patch: expected 3 items, got 2"),
        ({"text_encoder": 5}, "NetConfig.text_encoder: 5 does not fit"),
        ({"ids": "abc"}, "NetConfig.ids: 'abc' does not fit"),
        ({"ids": [1, "x"]}, "NetConfig.ids: [1, 'x'] does not fit"),
        ({"mode": "zzz"}, "NetConfig.mode: 'zzz' is not one of 'kl', 'plain'"),
    ],
)
def test_bad_values_are_named(data, message):
    with pytest.raises(ConfigError) as info:
        NetConfig.from_dict(data)
    assert message in str(info.value)


def test_int_accepted_for_float_and_lenient_mode():
    assert NetConfig.from_dict({"mlp_ratio": 2}).mlp_ratio == 2.0
    assert NetConfig.from_dict({"seed_model": "x", "depth": 1}, strict=False).depth == 1


def test_bad_json_file(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        NetConfig.from_json(bad)
    with pytest.raises(ConfigError, match="cannot read config"):
        NetConfig.from_json(tmp_path / "missing.json")
