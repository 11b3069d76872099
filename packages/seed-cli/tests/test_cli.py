"""The `seed` command through typer's runner, with the real entry-point plugins of this environment."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image
from typer.testing import CliRunner

from seed_cli.main import create_app
from seed_core.images import read_metadata

COMMANDS = [
    "generate",
    "edit",
    "distill",
    "models",
    "accelerators",
    "samplers",
    "attention",
    "plugins",
    "info",
    "doctor",
]


@pytest.fixture
def run(seed_registry_factory):
    seed_registry_factory(entry_points=True, env={})  # the example plugin, found by its entry point

    def invoke(*args: str):
        return CliRunner().invoke(create_app(), list(args))

    return invoke


def test_root_help_lists_every_command(run):
    result = run("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(run, command):
    result = run(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage: seed " + command in result.output
    assert len(result.output.splitlines()) > 3


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (
            ["generate", "x", "-m", "toy-gradiant"],
            "Unknown model 'toy-gradiant'. Did you mean 'toy-gradient'?",
        ),
        (
            ["generate", "x", "-m", "toy", "--accel", "toy-fewer-step"],
            "Unknown accelerator 'toy-fewer-step'. Did you mean 'toy-fewer-steps'?",
        ),
        (["generate", "x", "-m", "toy", "--sampler", "hune"], "Unknown sampler 'hune'. Did you mean 'heun'?"),
        (["edit", "in.png", "x", "-m", "tyo"], "Unknown model 'tyo'. Did you mean 'toy'?"),
        (["accelerators", "-m", "toi"], "Unknown model 'toi'. Did you mean 'toy'?"),
        (["generate", "x", "-m", "toy", "--accel", "toy-fewer-steps:factr=2"], "Did you mean 'factor'?"),
        (
            ["generate", "x", "-m", "./nonexist"],
            "-m ./nonexist: no such directory",
        ),  # had said "Unknown model"
        (["generate", "x", "-m", "in.png"], "-m in.png: a file, not a model directory"),
    ],
)
def test_unknown_names_exit_2_with_did_you_mean(run, args, hint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (8, 8)).save("in.png")
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert hint in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_generate_writes_images_with_metadata(run, tmp_path):
    out = tmp_path / "out.png"
    result = run(
        "generate",
        "a blue sky",
        "-m",
        "toy",
        "-n",
        "2",
        "--seed",
        "5",
        "-o",
        str(out),
        "--accel",
        "toy-fewer-steps:factor=2",
        "--sampler",
        "heun",
        "--steps",
        "6",
    )
    assert result.exit_code == 0, result.output
    paths = [tmp_path / "out-0.png", tmp_path / "out-1.png"]
    assert result.output.split() == [str(p) for p in paths]
    first, second = (read_metadata(p) for p in paths)
    assert first["request"]["prompt"] == "a blue sky" and first["model"] == "toy-gradient"
    assert (first["seed"], second["seed"]) == (5, 6)
    assert first["accelerators"] == [{"name": "toy-fewer-steps", "kind": "steps", "options": {"factor": 2}}]
    assert first["settings"]["steps"] == 3 and first["settings"]["sampler"] == "heun"
    with Image.open(paths[0]) as a, Image.open(paths[1]) as b:
        r, _g, bl = a.getpixel((32, 2))
        assert bl > 150 and r < 90  # the prompt's colour, blue
        assert a.tobytes() != b.tobytes()  # different seeds, different grain

    again = run("generate", "a blue sky", "-m", "toy", "-n", "2", "--seed", "5", "-o", str(out))
    assert again.exit_code == 1 and "already exists; pass --force" in again.output
    forced = run("generate", "a blue sky", "-m", "toy", "-n", "2", "--seed", "5", "-o", str(out), "--force")
    assert forced.exit_code == 0, forced.output

    info = run("info", str(paths[0]))
    assert info.exit_code == 0 and "a blue sky" in info.output and "toy-gradient" in info.output
    raw = run("info", str(paths[0]), "--json")
    assert json.loads(raw.output)["seed"] == 5


def test_same_seed_same_image(run, tmp_path):
    for name in ("a.png", "b.png"):
        assert run("generate", "green", "-m", "toy", "-s", "3", "-o", str(tmp_path / name)).exit_code == 0
    with Image.open(tmp_path / "a.png") as a, Image.open(tmp_path / "b.png") as b:
        assert a.tobytes() == b.tobytes()


def test_edit_runs(run, tmp_path):
    source = tmp_path / "src.png"
    Image.new("RGB", (32, 16), (200, 30, 30)).save(source)
    result = run("edit", str(source), "make it blue", "-m", "toy", "--image-guidance", "1.2")
    assert result.exit_code == 0, result.output
    data = read_metadata(tmp_path / "src-edited.png")
    assert data["request"]["task"] == "edit" and data["request"]["image_guidance"] == 1.2
    with Image.open(tmp_path / "src-edited.png") as im:
        assert im.size == (32, 16)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["generate", "x", "-m", "toy", "--width", "4"], 2, "width must be between 8"),
        (["generate", "x", "-m", "toy", "-o", "out.jpg"], 2, "must end in .png"),
        (["generate", "x", "-m", "toy", "--guidance-interval", "0.9,0.1"], 2, "expected LOW,HIGH with 0 <="),
        (["generate", "x", "-m", "toy", "--guidance-interval", "half"], 2, "'half': expected LOW,HIGH"),
        (["edit", "missing.png", "x", "-m", "toy"], 2, "source image missing.png does not exist"),
        (["info", "missing.png"], 1, "missing.png: no such file"),
        (["generate", "x", "-m", "toy", "--accel", "toy-fewer-steps:factor"], 2, "is not key=value"),
        (["distill", "--teacher", "toy"], 2, "needs --teacher, --method or --recipe, and --out"),
        (["distill", "-m", "toy", "--method", "dmd3", "-o", "o"], 2, "Did you mean 'dmd2'"),
        (
            ["distill", "-m", "toy", "--method", "dmd2", "-o", "o"],
            2,
            "does not implement the distillation protocol",
        ),
    ],
)
def test_bad_input_is_one_line(run, tmp_path, monkeypatch, args, code, message):
    monkeypatch.chdir(tmp_path)
    result = run(*args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_bad_device_and_dtype(run, monkeypatch, tmp_path):
    import torch

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cases = [
        (["--device", "cuda"], "CUDA is not available here; use --device cpu"),
        (["--device", "tpu9"], "unknown device 'tpu9'"),
        (["--dtype", "float8"], "unknown dtype 'float8'; use one of float32, float16, bfloat16"),
    ]
    for extra, message in cases:
        result = run("generate", "x", "-m", "toy", *extra)
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_without_the_default_model_says_so(seed_registry_factory):
    seed_registry_factory(entry_points=True, env={"SEED_LOAD_PLUGINS": "example"})  # no seed-mini
    result = CliRunner().invoke(create_app(), ["generate", "a red circle"])
    assert result.exit_code == 1
    assert "default model 'seedream-mini' is not installed" in result.output
    assert "its plugin is disabled: not listed in SEED_LOAD_PLUGINS" in result.output
    assert "toy-gradient" in result.output


def test_with_no_model_at_all(seed_registry_factory):
    seed_registry_factory()  # no plugins
    runner = CliRunner()
    result = runner.invoke(create_app(), ["generate", "a red circle"])
    assert result.exit_code == 1 and "No model is installed" in result.output
    assert "`pip install seed-mini`" in result.output
    listing = runner.invoke(create_app(), ["models"])
    assert listing.exit_code == 0 and "No model is installed" in listing.output


def test_listings(run):
    models = json.loads(run("models", "--json").output)
    assert ("toy-gradient", "example") in [(m["name"], m["plugin"]) for m in models]
    samplers = {s["name"] for s in json.loads(run("samplers", "--json").output)}
    assert {"euler", "heun", "dpmpp-2m", "toy-midpoint"} <= samplers
    accels = {a["name"]: a for a in json.loads(run("accelerators", "-m", "toy", "--json").output)}
    assert accels["toy-fewer-steps"]["applies"] == "yes"
    assert {"sdpa", "math"} <= {b["name"] for b in json.loads(run("attention", "--json").output)}
    doctor = run("doctor")
    assert doctor.exit_code == 0 and "torch" in doctor.output and "toy-gradient" in doctor.output


def test_broken_plugin_is_listed_and_other_commands_work(seed_entry_point_plugin, seed_registry_factory):
    seed_entry_point_plugin("seedtest-broken", "import not_a_real_module_anywhere\n")
    seed_registry_factory(entry_points=True, env={})
    runner = CliRunner()
    plugins = json.loads(runner.invoke(create_app(), ["plugins", "--json"]).output)
    broken = next(p for p in plugins if p["name"] == "seedtest-broken")
    assert broken["status"] == "failed"
    assert broken["error"] == "ModuleNotFoundError: No module named 'not_a_real_module_anywhere'"
    table = runner.invoke(create_app(), ["plugins"])
    assert table.exit_code == 0 and "seedtest-broken" in table.output and "failed" in table.output
    models = runner.invoke(create_app(), ["models"])
    assert models.exit_code == 0 and "toy-gradient" in models.output
    doctor = runner.invoke(create_app(), ["doctor"])
    assert "1 failed" in doctor.output


def test_help_does_not_import_torch():
    code = (
        "import sys\nfrom seed_cli.main import create_app\n"
        "try:\n    create_app()(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "assert 'torch' not in sys.modules, 'seed --help imported torch'\nprint('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr


def test_python_dash_m():
    out = subprocess.run(
        [sys.executable, "-m", "seed_cli", "samplers", "--json"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "euler" in out.stdout


def test_unwritable_outputs_are_refused_before_any_work(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir.png").mkdir()
    (tmp_path / "afile").write_text("x")
    cases = [
        (["-o", "adir.png", "--force"], "adir.png is a directory; give a file name"),
        (["-o", "afile/out.png"], "afile is a file, not a directory"),
    ]
    for extra, message in cases:
        result = run("generate", "x", "-m", "toy", *extra)
        assert result.exit_code == 1, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_info_on_foreign_metadata_is_one_line(run, tmp_path):
    from seed_core.images import save_png

    for i, data in enumerate(({"accelerators": [{"name": "x"}]}, {"request": "str"}, {"settings": [1]})):
        path = save_png(Image.new("RGB", (4, 4)), tmp_path / f"odd{i}.png", data)
        result = run("info", str(path))
        assert result.exit_code == 0 or "not in the form seed writes" in result.output, result.output
        assert "Traceback" not in result.output
        assert run("info", str(path), "--json").exit_code == 0


def test_model_directories_in_listing_commands(run, tmp_path):
    (tmp_path / "config.json").write_text('{"seed_model": "toy-gradient"}')
    result = run("accelerators", "-m", str(tmp_path), "--json")
    assert result.exit_code == 0
    assert {a["name"]: a["applies"] for a in json.loads(result.output)}["toy-fewer-steps"] == "yes"
    (tmp_path / "config.json").write_bytes(b"\xff\xfe not utf-8")
    bad = run("generate", "x", "-m", str(tmp_path))
    assert bad.exit_code == 2 and "cannot read it" in bad.output


BAD_COMMAND = """
from seed_core import hookimpl

@hookimpl
def seed_register_commands(app):
    @app.command("bad-command")
    def bad(x: "NameThatDoesNotExist") -> None:  # typer would fail on this annotation at run time
        pass
"""


def test_a_command_typer_cannot_build_is_a_plugin_error(seed_entry_point_plugin, seed_registry_factory):
    seed_entry_point_plugin("seedtest-badcmd", BAD_COMMAND)
    registry = seed_registry_factory(entry_points=True, env={})
    result = CliRunner().invoke(create_app(), ["samplers", "--json"])
    assert result.exit_code == 0, result.output
    status, error = next((p.status, p.error) for p in registry.plugins if p.name == "seedtest-badcmd")
    assert status == "failed" and "NameThatDoesNotExist" in error


def test_info_shows_the_task_once():
    from seed_cli.main import _info_table

    data = {
        "request": {"task": "t2i", "prompt": "p"},
        "model": "m",
        "settings": {"task": "generate", "steps": 4},
    }
    fields = list(_info_table("x.png", data).columns[0].cells)
    assert fields.count("task") == 1 and "steps" in fields
