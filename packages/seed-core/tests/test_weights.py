from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from seed_core.errors import (
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    OutputExistsError,
)
from seed_core.weights import (
    build_on_meta,
    count_parameters,
    human_count,
    load_into,
    load_model,
    load_safetensors,
    load_torch_checkpoint,
    read_state_dict,
    save_safetensors,
)


class Net(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.proj = nn.Linear(4, width)
        self.out = nn.Linear(width, 2)
        self.register_buffer("scale", torch.ones(2))
        self.register_buffer("steps", torch.zeros(1, dtype=torch.int64))


class Payload:  # an arbitrary object: unpickling it could run code, so loading must refuse it
    pass


def _state(width: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return Net(width).state_dict()


def test_round_trip_single_file(tmp_path):
    state = _state()
    [path] = save_safetensors(state, tmp_path / "model.safetensors", metadata={"preset": "tiny"})
    loaded = load_safetensors(path)
    assert loaded.keys() == state.keys()
    for key in state:
        torch.testing.assert_close(loaded[key], state[key], rtol=0, atol=0)
    assert load_safetensors(tmp_path).keys() == state.keys()  # a model directory works too


def test_round_trip_sharded_with_index(tmp_path):
    state = _state(width=64)
    files = save_safetensors(state, tmp_path / "model.safetensors", max_shard_bytes=600)
    index = files[-1]
    assert index.name == "model.safetensors.index.json" and len(files) >= 3
    weight_map = json.loads(index.read_text())["weight_map"]
    assert set(weight_map) == set(state)
    for source in (index, tmp_path):
        loaded = load_safetensors(source)
        for key in state:
            torch.testing.assert_close(loaded[key], state[key], rtol=0, atol=0)


def test_dtype_cast_on_save_and_load_keeps_integers(tmp_path):
    state = _state()
    save_safetensors(state, tmp_path / "half.safetensors", dtype="float16")
    half = load_safetensors(tmp_path / "half.safetensors")
    assert half["proj.weight"].dtype == torch.float16 and half["steps"].dtype == torch.int64
    bf = load_safetensors(tmp_path / "half.safetensors", dtype=torch.bfloat16)
    assert bf["proj.weight"].dtype == torch.bfloat16 and bf["steps"].dtype == torch.int64


def test_no_overwrite_without_force_and_no_temp_files_left(tmp_path):
    path = tmp_path / "model.safetensors"
    save_safetensors(_state(seed=0), path)
    with pytest.raises(OutputExistsError, match="already exists; pass --force"):
        save_safetensors(_state(seed=1), path)
    save_safetensors(_state(seed=1), path, force=True)
    torch.testing.assert_close(load_safetensors(path)["proj.weight"], _state(seed=1)["proj.weight"])
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_shared_tensors_are_saved(tmp_path):
    w = torch.randn(4, 4)
    save_safetensors({"a": w, "b": w, "c": w[:2]}, tmp_path / "tied.safetensors")
    loaded = load_safetensors(tmp_path / "tied.safetensors")
    for key, expected in (("a", w), ("b", w), ("c", w[:2])):
        torch.testing.assert_close(loaded[key], expected, rtol=0, atol=0)


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight


def test_tied_weights_stay_tied(tmp_path):
    source = Tied()
    save_safetensors(source.state_dict(), tmp_path / "tied.safetensors")
    model = load_model(Tied, tmp_path / "tied.safetensors")
    assert model.head.weight is model.emb.weight
    torch.testing.assert_close(model.head.weight, source.emb.weight)
    only_one = {"emb.weight": source.emb.weight.detach()}  # a checkpoint may store the tie once
    model = build_on_meta(Tied)
    load_into(model, only_one)
    assert model.head.weight is model.emb.weight


class WithTable(nn.Module):
    """A module with a non-persistent buffer it can rebuild (like a RoPE frequency table)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(2, 2)
        self.register_buffer("table", torch.arange(4.0), persistent=False)

    def init_buffers(self) -> None:
        self.table = torch.arange(4.0, device=self.proj.weight.device)


def test_non_persistent_buffers_are_rebuilt(tmp_path):
    save_safetensors(WithTable().state_dict(), tmp_path / "m.safetensors")
    model = load_model(WithTable, tmp_path / "m.safetensors")
    torch.testing.assert_close(model.table, torch.arange(4.0))

    class NoInit(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("table", torch.zeros(2), persistent=False)

    with pytest.raises(CheckpointMismatchError, match="'table' still on the meta device"):
        load_into(build_on_meta(NoInit), {})


def test_mixed_dtype_checkpoint_gets_the_model_dtype(tmp_path):
    state = _state()
    state["proj.weight"] = state["proj.weight"].half()
    save_safetensors(state, tmp_path / "mixed.safetensors")
    model = load_model(Net, tmp_path / "mixed.safetensors")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert model.steps.dtype == torch.int64
    assert model.out(model.proj(torch.zeros(1, 4))).shape == (1, 2)  # runs: no dtype clash


def test_resaving_unsharded_replaces_an_old_sharded_save(tmp_path):
    save_safetensors(_state(width=64, seed=0), tmp_path / "model.safetensors", max_shard_bytes=600)
    new = _state(width=64, seed=1)
    save_safetensors(new, tmp_path / "model.safetensors", force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    torch.testing.assert_close(load_safetensors(tmp_path)["proj.weight"], new["proj.weight"])
    save_safetensors(
        _state(width=64, seed=2), tmp_path / "model.safetensors", max_shard_bytes=600, force=True
    )
    assert not (tmp_path / "model.safetensors").exists()
    torch.testing.assert_close(
        load_safetensors(tmp_path)["proj.weight"], _state(width=64, seed=2)["proj.weight"]
    )


def test_written_files_follow_the_umask(tmp_path):
    import os
    import stat

    [path] = save_safetensors(_state(), tmp_path / "m.safetensors")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_truncated_file_is_one_clear_line(tmp_path):
    path = tmp_path / "model.safetensors"
    save_safetensors(_state(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    with pytest.raises(CorruptCheckpointError) as info:
        load_safetensors(path)
    message = str(info.value)
    assert str(path) in message and "corrupt or truncated" in message and "\n" not in message


def test_corrupted_header_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    save_safetensors(_state(), path)
    data = bytearray(path.read_bytes())
    data[8:20] = b"#garbage####"
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="model.safetensors: corrupt or truncated") as info:
        load_safetensors(path)
    assert "\n" not in str(info.value)
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CorruptCheckpointError, match="empty.safetensors"):
        load_safetensors(tmp_path / "empty.safetensors")


def test_missing_files(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="no such file"):
        load_safetensors(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointNotFoundError, match="no .safetensors file"):
        load_safetensors(tmp_path)
    save_safetensors(_state(width=64), tmp_path / "model.safetensors", max_shard_bytes=600)
    next(tmp_path.glob("model-00002-*.safetensors")).unlink()
    with pytest.raises(CheckpointNotFoundError, match="shard model-00002-of-.* is missing"):
        load_safetensors(tmp_path / "model.safetensors.index.json")


def test_shape_mismatch_names_the_key(tmp_path):
    save_safetensors(_state(width=8), tmp_path / "model.safetensors")
    with pytest.raises(CheckpointMismatchError) as info:
        load_model(lambda: Net(width=16), tmp_path / "model.safetensors")
    message = str(info.value)
    assert "\n" not in message
    assert "key 'out.weight' has shape (2, 8) but the model expects (2, 16)" in message
    assert "model.safetensors" in message


def test_missing_and_unexpected_keys_are_named():
    state = _state()
    extra = {**state, "head.weight": torch.zeros(1)}
    with pytest.raises(
        CheckpointMismatchError, match="1 unexpected key\\(s\\) the model does not have: 'head.weight'"
    ):
        load_into(build_on_meta(Net), extra)
    partial = {k: v for k, v in state.items() if k != "out.bias"}
    with pytest.raises(CheckpointMismatchError, match="missing 1 key\\(s\\) the model needs: 'out.bias'"):
        load_into(build_on_meta(Net), partial)
    with pytest.raises(CheckpointMismatchError, match="'out.bias' still on the meta device"):
        load_into(build_on_meta(Net), partial, strict=False)
    report = load_into(Net(), extra, strict=False)
    assert report.unexpected == ["head.weight"] and report.missing == []


def test_meta_build_then_assign_uses_the_file_tensors(tmp_path):
    save_safetensors(_state(), tmp_path / "model.safetensors")
    meta = build_on_meta(Net)
    assert all(p.is_meta for p in meta.parameters())
    assert count_parameters(meta) == 4 * 8 + 8 + 8 * 2 + 2
    model = load_model(Net, tmp_path / "model.safetensors", dtype="float16")
    assert model.proj.weight.dtype == torch.float16 and not model.proj.weight.is_meta
    assert isinstance(model.proj.weight, nn.Parameter) and model.proj.weight.requires_grad
    torch.testing.assert_close(model.out.bias.float(), _state()["out.bias"], atol=1e-3, rtol=0)


def test_torch_checkpoints_only_with_weights_only(tmp_path):
    state = _state()
    torch.save(state, tmp_path / "plain.pt")
    assert read_state_dict(tmp_path / "plain.pt").keys() == state.keys()
    torch.save({"state_dict": state, "step": 3}, tmp_path / "wrapped.ckpt")
    assert load_torch_checkpoint(tmp_path / "wrapped.ckpt").keys() == state.keys()

    torch.save({"w": torch.zeros(1), "evil": Payload()}, tmp_path / "unsafe.pth")
    with pytest.raises(CorruptCheckpointError, match="unsafe.pth: refused, it holds more than tensors"):
        load_torch_checkpoint(tmp_path / "unsafe.pth")
    (tmp_path / "broken.pt").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CorruptCheckpointError, match="broken.pt: corrupt or truncated"):
        load_torch_checkpoint(tmp_path / "broken.pt")
    for name, data in (("text.pth", b"hello world"), ("image.pth", b"\x89PNG\r\n\x1a\n")):
        (tmp_path / name).write_bytes(data)  # a text file had failed the reader with a KeyError traceback
        with pytest.raises(CorruptCheckpointError, match=f"{name}: not a PyTorch checkpoint"):
            load_torch_checkpoint(tmp_path / name)
    truncated = (tmp_path / "plain.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(truncated[: len(truncated) // 2])
    with pytest.raises(CorruptCheckpointError, match="cut.pt: corrupt or truncated"):
        load_torch_checkpoint(tmp_path / "cut.pt")
    legacy = tmp_path / "legacy.pt"  # the pre-zip format (a pickle) still reads
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    assert load_torch_checkpoint(legacy).keys() == state.keys()


def test_weight_adapter_is_detected(seed_registry_factory, tmp_path):
    from seed_core import hookimpl
    from seed_core.specs import WeightAdapterSpec

    class Official:
        @hookimpl
        def seed_register_weight_adapters(self, register):
            register(
                WeightAdapterSpec(
                    "official",
                    detect=lambda keys: any(k.startswith("module.") for k in keys),
                    convert=lambda sd: {k.removeprefix("module."): v for k, v in sd.items()},
                )
            )

    seed_registry_factory(Official())
    save_safetensors({f"module.{k}": v for k, v in _state().items()}, tmp_path / "official.safetensors")
    with pytest.raises(CheckpointMismatchError, match="missing 6 key"):
        load_model(Net, tmp_path / "official.safetensors")
    model = load_model(Net, tmp_path / "official.safetensors", adapt=True)
    torch.testing.assert_close(model.proj.weight, _state()["proj.weight"])


def test_human_count():
    assert [human_count(n) for n in (999, 1234, 8_500_000, 12_300_000_000)] == [
        "999",
        "1.23K",
        "8.5M",
        "12.3B",
    ]
