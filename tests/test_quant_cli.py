"""`seed quantize` and the weight accelerators on a tiny Seedream directory, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seed_core.images import read_metadata
from seed_core.specs import LoadOptions


@pytest.fixture
def model(run, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    from seed_dit.pipeline import random_pipeline

    path = tmp_path / "model"
    random_pipeline(run.registry.models.get("seedream"), LoadOptions()).save_pretrained(path, dtype="float32")
    (path / "students" / "adm-2").mkdir(parents=True)  # students are float models: not copied
    return path


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float64)


@pytest.mark.parametrize("kind", ["int8", "w8a8", "int4"])
def test_quantize_then_generate_by_path_equals_quantize_on_load(run, model: Path, tmp_path: Path, kind: str):  # type: ignore[no-untyped-def]
    out = tmp_path / kind
    result = run("quantize", "-m", str(model), "--kind", kind, "-o", str(out), "--dtype", "float32")
    assert result.exit_code == 0, result.output
    assert not (out / "students").exists() and (out / "config.json").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["baked_accelerators"][0]["name"] == kind and config["quantization"]["from"] == "seedream"
    if kind == "w8a8":  # smoothed by default (a text-to-image model calibrates), and recorded as such
        assert config["baked_accelerators"][0]["options"]["smooth"] == 0.5

    on_load, from_dir = tmp_path / "a.png", tmp_path / "b.png"
    args = ["generate", "a red circle", "--seed", "3"]
    assert run(*args, "-m", str(model), "--accel", kind, "-o", str(on_load)).exit_code == 0
    result = run(*args, "-m", str(out), "-o", str(from_dir))
    assert result.exit_code == 0, result.output
    assert np.array_equal(_pixels(on_load), _pixels(from_dir))  # same codes, no re-quantization
    assert read_metadata(from_dir)["accelerators"][0]["name"] == kind

    float_image = tmp_path / "f.png"
    assert run(*args, "-m", str(model), "-o", str(float_image)).exit_code == 0
    assert not np.array_equal(_pixels(float_image), _pixels(from_dir))


def test_by_name_from_the_local_store(run, model: Path, tmp_path: Path, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SEED_HOME", str(tmp_path / "home"))
    result = run("quantize", "-m", str(model), "--kind", "int4", "--name", "tiny-int4")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "home" / "models" / "tiny-int4" / "config.json").is_file()
    image = tmp_path / "x.png"
    result = run("generate", "a red circle", "-m", "tiny-int4", "-o", str(image))
    assert result.exit_code == 0, result.output
    assert read_metadata(image)["accelerators"][0]["name"] == "int4"
    assert "tiny-int4" in run("models", "--json").output
    assert "tiny-int4" not in run("accelerators", "--json").output
    both = run("quantize", "-m", str(model), "--name", "a", "-o", str(tmp_path / "b"))
    assert both.exit_code == 2 and "give -o DIR or --name NAME, not both" in both.output
    # a registered name would load the registered model, never this copy
    taken = run("quantize", "-m", str(model), "--name", "seedream")
    assert taken.exit_code == 2 and "a registered model is called that" in taken.output
    assert not (tmp_path / "home" / "models" / "seedream").exists()


def test_refusals(run, model: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    out = tmp_path / "q"
    assert run("quantize", "-m", str(model), "--kind", "int8", "-o", str(out)).exit_code == 0
    image = str(tmp_path / "x.png")

    again = run("quantize", "-m", str(model), "--kind", "int8", "-o", str(out))
    assert again.exit_code == 2 and "exists; pass --force" in again.output
    weights = (model / "dit.safetensors").read_bytes()
    itself = run("quantize", "-m", str(model), "--kind", "int8", "-o", str(model), "--force")
    assert itself.exit_code == 2 and "the model's own directory" in itself.output
    assert (model / "dit.safetensors").read_bytes() == weights  # the float weights are untouched
    twice = run("quantize", "-m", str(out), "--kind", "int4", "-o", str(tmp_path / "q2"))
    assert twice.exit_code != 0 and "already 'int8" in twice.output
    second = run("generate", "x", "-m", str(out), "--accel", "int4", "-o", image)
    assert second.exit_code != 0 and "already 'int8" in second.output and "original model" in second.output
    student = run("generate", "x", "-m", str(out), "--accel", "adm:steps=2", "-o", image)
    assert student.exit_code != 0 and "must be applied before 'int8'" in student.output
    kind = run("quantize", "-m", str(model), "--kind", "int3", "-o", str(tmp_path / "q3"))
    assert kind.exit_code == 2 and "use one of int8, w8a8, fp8, int4" in kind.output
    group = run("generate", "x", "-m", str(model), "--accel", "int4:group=48", "-o", image)
    assert group.exit_code != 0 and "group=48" in group.output

    # fp8 can be written anywhere but runs only on FP8 tensor cores
    fp8 = tmp_path / "fp8"
    assert run("quantize", "-m", str(model), "--kind", "fp8", "-o", str(fp8)).exit_code == 0
    import torch

    if not torch.cuda.is_available():
        for args in (["-m", str(fp8)], ["-m", str(model), "--accel", "fp8"]):
            result = run("generate", "x", *args, "-o", image)
            assert result.exit_code != 0 and "fp8 needs a CUDA GPU" in result.output
            assert "Traceback" not in result.output

    # a corrupt quantized file and a record that does not fit the model
    dit = out / "dit.safetensors"
    data = dit.read_bytes()
    dit.write_bytes(data[: len(data) // 2])
    corrupt = run("generate", "x", "-m", str(out), "-o", image)
    assert (
        corrupt.exit_code != 0
        and "corrupt or truncated" in corrupt.output
        and "dit.safetensors" in corrupt.output
    )
    dit.write_bytes(data)
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(dit), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    record = json.loads(meta["seed_accelerator"])
    record["layers"]["no_such.layer"] = "int8"
    save_file(tensors, str(dit), metadata={"seed_accelerator": json.dumps(record)})
    wrong = run("generate", "x", "-m", str(out), "-o", image)
    assert wrong.exit_code != 0 and "'no_such.layer' does not exist" in wrong.output


@pytest.mark.parametrize("kind,bound", [("int8", 0.53), ("int4", 0.30)])
def test_shipped_model_shrinks(run, tmp_path: Path, kind: str, bound: float) -> None:  # type: ignore[no-untyped-def]
    """Issue 7's memory targets on seedream-mini, whose shipped files are 16-bit (the bytes of bf16)."""
    from seed_core.pipeline import load
    from seed_quant.quantize import apply_quant, save_quantized

    pipeline = load("seedream-mini", registry=run.registry)
    source = Path(pipeline.source or "")
    apply_quant(pipeline, kind)
    save_quantized(pipeline, tmp_path / kind, kind, {"parts": "all"})
    files = ("dit", "vae", "text_encoder")
    before = sum((source / f"{c}.safetensors").stat().st_size for c in files)
    after = sum((tmp_path / kind / f"{c}.safetensors").stat().st_size for c in files)
    assert after <= bound * before, f"{kind}: {after / before:.3f}x"


def test_w8a8_smoothing_off_stays_off(run, model: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    out = tmp_path / "plain"
    result = run("quantize", "-m", str(model), "--kind", "w8a8", "--smooth", "0", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["baked_accelerators"][0]["options"]["smooth"] == 0.0
    image = tmp_path / "x.png"
    assert run("generate", "a red circle", "-m", str(out), "-o", str(image)).exit_code == 0


def test_a_directory_saved_without_its_smoothing_alpha_still_loads(run, model: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """`--accel w8a8` smooths at its default alpha; a directory saved from that pipeline with options
    that leave `smooth` out records it as done (before, the record said none and loading refused the
    factors as unexpected keys), and options that contradict the layers are refused in one line."""
    from seed_core.errors import AcceleratorError
    from seed_core.pipeline import load
    from seed_quant.quantize import save_quantized

    pipeline = load(str(model), accelerators=["w8a8"], registry=run.registry)
    save_quantized(pipeline, tmp_path / "q", "w8a8", {"parts": "all"})
    assert json.loads((tmp_path / "q" / "config.json").read_text())["quantization"]["smooth"] == 0.5
    image = tmp_path / "x.png"
    result = run("generate", "a red circle", "-m", str(tmp_path / "q"), "-o", str(image))
    assert result.exit_code == 0, result.output
    with pytest.raises(AcceleratorError, match="the layers were smoothed but the options say smooth=0"):
        save_quantized(pipeline, tmp_path / "r", "w8a8", {"parts": "all", "smooth": 0})
