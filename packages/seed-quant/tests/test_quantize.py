"""The quantization rules, quantizing a pipeline's components, and restoring a saved file on the meta
device, on a small stand-in pipeline (the backbone end to end is in tests/test_quant_cli.py)."""

import pytest
import torch
from torch import nn

from seed_core.errors import AcceleratorError, CheckpointMismatchError, CorruptCheckpointError
from seed_core.pipeline import Pipeline
from seed_core.specs import ModelSpec
from seed_core.weights import TRANSFORM_KEY, build_on_meta, load_component, save_safetensors
from seed_quant.quantize import (
    apply_quant,
    file_record,
    quantize_module,
    quantized_layers,
    resolve_smooth,
    restore,
    rule,
    storage_dtypes,
)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, 64)
        self.inp = nn.Linear(8, 64)  # 512 weights: too small to pay
        self.body = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 64))
        self.odd = nn.Linear(100, 60)  # not a multiple of 8 / 16
        self.conv = nn.Conv2d(16, 32, 3, padding=1)
        self.out = nn.Linear(64, 64)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(self.embed(ids)))


class StandIn(Pipeline):
    def __init__(self) -> None:
        super().__init__(ModelSpec("stand-in", "test", ("t2i",), lambda s, o: StandIn()))
        torch.manual_seed(0)
        self.net = Net()

    def components(self):  # type: ignore[no-untyped-def]
        return {"net": self.net}

    def sensitive_modules(self):  # type: ignore[no-untyped-def]
        return {"net": ("out",)}


def test_rules():
    net = Net()
    got = {
        kind: {n: rule(n, m, kind) for n, m in net.named_modules() if n}
        for kind in ("int8", "w8a8", "fp8", "int4")
    }
    assert got["int8"]["inp"] is None and got["int8"]["body.0"] == "int8" and got["int8"]["body.1"] is None
    assert got["w8a8"]["body.0"] == "w8a8" and got["w8a8"]["odd"] == "int8"
    assert got["fp8"]["body.0"] == "fp8" and got["fp8"]["odd"] is None
    assert got["int4"]["body.0"] == "int4" and got["int4"]["conv"] == "conv-int4"
    assert got["int4"]["embed"] == "embed-int4" and got["int8"]["embed"] == "embed-int8"
    assert got["w8a8"]["conv"] == "conv-int8"
    assert rule("out", net.out, "int8", keep=("out",)) is None
    assert rule("blocks.3.final", net.out, "int8", keep=("blocks.*.final",)) is None


def test_apply_keeps_the_sensitive_layers_and_refuses_twice():
    pipe = StandIn()
    ids = torch.tensor([[1, 2, 3]])
    ref = pipe.net(ids).detach()
    apply_quant(pipe, "int8")
    layers = quantized_layers(pipe.net)
    assert "out" not in layers and layers["body.0"] == "int8" and layers["embed"] == "embed-int8"
    assert float((pipe.net(ids).detach() - ref).norm() / ref.norm()) < 0.02
    with pytest.raises(AcceleratorError, match="already quantized"):
        apply_quant(pipe, "int4")


def test_bad_options_and_devices():
    with pytest.raises(AcceleratorError, match="group"):
        apply_quant(StandIn(), "int4", group=48)
    with pytest.raises(AcceleratorError, match="w8a8 only"):
        apply_quant(StandIn(), "int8", smooth=0.5)
    with pytest.raises(AcceleratorError, match="no component 'dit'"):
        apply_quant(StandIn(), "int8", parts="dit")
    for count in (0, -3):  # -3 had taken every prompt but the last three (a slice), for minutes
        with pytest.raises(AcceleratorError, match=f"calibration={count}; give the number of prompts"):
            apply_quant(StandIn(), "w8a8", calibration=count)
    if not torch.cuda.is_available():
        with pytest.raises(AcceleratorError, match="fp8 needs a CUDA GPU"):
            apply_quant(StandIn(), "fp8")
    apply_quant(StandIn(), "fp8", check_device=False)  # writing fp8 codes works anywhere


def test_w8a8_is_smoothed_by_default_where_the_model_can_be_calibrated():
    text = StandIn()
    restorer = StandIn()
    restorer.spec = ModelSpec("restorer", "test", ("restore",), lambda s, o: StandIn())
    assert resolve_smooth(text, "w8a8", None) == 0.5  # DEFAULT_SMOOTH: calibration prompts can run
    assert resolve_smooth(restorer, "w8a8", None) == 0.0  # no text task: nothing to calibrate with
    assert resolve_smooth(text, "int8", None) == 0.0 and resolve_smooth(text, "w8a8", 0.0) == 0.0
    assert resolve_smooth(restorer, "w8a8", 0.3) == 0.3  # an explicit alpha is kept
    apply_quant(restorer, "w8a8")  # unsmoothed: it runs no prompts
    assert quantized_layers(restorer.net)["body.0"] == "w8a8" and restorer.net.body[0].smooth is None


@pytest.mark.parametrize("kind", ["int8", "w8a8", "int4"])
def test_a_saved_file_restores_without_quantizing_again(kind, tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = Net()
    layers = quantize_module(net, kind, group=64)
    path = tmp_path / "net.safetensors"
    record = file_record(kind, {"group": 64}, layers)
    import json

    save_safetensors(storage_dtypes(net, torch.float32), path, metadata={TRANSFORM_KEY: json.dumps(record)})

    from seed_quant import layers as layer_module

    for cls in layer_module.LAYERS.values():  # loading must not quantize
        monkeypatch.setattr(cls, "from_float", classmethod(lambda *a, **k: pytest.fail("re-quantized")))
    loaded = restore(build_on_meta(Net), record)
    from seed_core.weights import load_into, load_safetensors

    load_into(loaded, load_safetensors(path))
    ids = torch.tensor([[4, 5]])
    torch.testing.assert_close(loaded(ids), net(ids))


def test_load_component_goes_through_the_registered_accelerator(tmp_path, seed_registry_factory):
    import json

    registry = seed_registry_factory(entry_points=True, env={})
    net = Net()
    layers = quantize_module(net, "int4", group=32)
    path = tmp_path / "net.safetensors"
    save_safetensors(
        storage_dtypes(net, torch.bfloat16),
        path,
        metadata={TRANSFORM_KEY: json.dumps(file_record("int4", {"group": 32}, layers))},
    )
    loaded = load_component(build_on_meta(Net), path, registry=registry)
    assert quantized_layers(loaded) == layers
    ids = torch.tensor([[7]])
    torch.testing.assert_close(loaded(ids), net(ids), rtol=2e-2, atol=2e-2)  # floats stored as bf16


def test_restore_refuses_bad_records():
    with pytest.raises(CorruptCheckpointError, match="layers"):
        restore(build_on_meta(Net), {"accelerator": "int8"})
    with pytest.raises(CorruptCheckpointError, match="unknown format 'int3'"):
        restore(build_on_meta(Net), file_record("int8", {}, {"body.0": "int3"}))
    with pytest.raises(CheckpointMismatchError, match="'blocks.9.qkv' does not exist"):
        restore(build_on_meta(Net), file_record("int8", {}, {"blocks.9.qkv": "int8"}))
    with pytest.raises(CorruptCheckpointError, match="upgrade seed-quant"):
        restore(build_on_meta(Net), {**file_record("int8", {}, {}), "format": 99})
