"""The training recipe: a few steps at tiny size, killed after a checkpoint, resumed: the loss curve is the
same as an uninterrupted run's."""

from __future__ import annotations

import argparse
import json
import traceback
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from seed_mini import train, world


def _losses(out: Path) -> dict[int, float]:
    """Loss per step; a resumed run drops the records past its checkpoint, so there is one per step."""
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records]
    assert steps == sorted(set(steps)), "a step logged twice or out of order"
    return {r["step"]: r["loss"] for r in records}


def test_vae_resumes_with_the_same_loss_curve(tmp_path):
    kwargs = {"steps": 6, "batch": 2, "preset": "tiny-f8", "checkpoint_every": 2, "log": lambda _: None}
    train.train_vae(tmp_path / "a", **kwargs)
    train.train_vae(tmp_path / "b", stop_after=3, **kwargs)  # "killed" one step after the step-2 checkpoint
    assert max(_losses(tmp_path / "b")) == 3
    train.train_vae(tmp_path / "b", **kwargs)
    a, b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert a.keys() == b.keys() == set(range(1, 7))
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-5, abs=1e-6), step
    assert (tmp_path / "a" / "vae.safetensors").exists() and (tmp_path / "a" / "vae.json").exists()


def test_decoder_fine_tune_keeps_the_latent_space_and_improves_the_reconstruction(tmp_path, capsys):
    quiet = {"batch": 4, "preset": "tiny-f8", "log": lambda _: None}
    base = train.train_vae(tmp_path / "vae", steps=30, **quiet)
    tuned = train.train_vae(tmp_path / "dec", steps=40, lr=2e-3, decoder_from=tmp_path / "vae", **quiet)
    before, after = train.load_vae(tmp_path / "vae"), train.load_vae(tmp_path / "dec")
    assert after.cfg == before.cfg  # the DiT's scaling and shift factors are not refitted
    enc_a, enc_b = before.encoder.state_dict(), after.encoder.state_dict()
    assert all(torch.equal(enc_a[k], enc_b[k]) for k in enc_a), "the encoder moved"
    dec_a, dec_b = before.decoder.state_dict(), after.decoder.state_dict()
    assert any(not torch.equal(dec_a[k], dec_b[k]) for k in dec_a), "the decoder did not train"
    x = train.vae_batch(99, 0, 8, 64)
    with torch.no_grad():
        assert torch.equal(before.encode(x), after.encode(x))
        err_before = (before.decode(before.encode(x)) - x).abs().mean().item()
        err_after = (after.decode(after.encode(x)) - x).abs().mean().item()
    assert err_after < 0.9 * err_before, (err_before, err_after)

    # install-vae writes it (fp16) into a model directory trained on that latent space, and refuses another
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"vae": base.cfg.to_dict()}))
    assert train.main(["install-vae", "--out", str(tmp_path / "dec"), "--to", str(model)]) == 0
    installed = train.load_vae(model)
    assert all(v.dtype == torch.float16 for v in load_file(model / "vae.safetensors").values())
    for k, v in tuned.decoder.state_dict().items():
        assert torch.allclose(installed.decoder.state_dict()[k], v.half().float()), k
    train.train_vae(tmp_path / "other", steps=2, seed=1, **quiet)
    with pytest.raises(SystemExit):
        train.main(["install-vae", "--out", str(tmp_path / "other"), "--to", str(model)])
    assert "config differs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main(["install-vae", "--out", str(tmp_path / "nothing"), "--to", str(model)])
    assert "not a trained autoencoder" in capsys.readouterr().err


def test_dit_resumes_with_the_same_loss_curve_and_exports_a_model(tmp_path, seed_registry_factory):
    train.train_vae(tmp_path / "vae", steps=2, batch=2, preset="tiny-f8", log=lambda _: None)
    kwargs = {
        "steps": 4,
        "batch": 2,
        "preset": "tiny",
        "checkpoint_every": 2,
        "export_every": 4,
        "log": lambda _: None,
        "warmup": 3,  # the resumed run must continue the warmup and the decay where they were
        "decay": 2,
    }
    train.train_dit(tmp_path / "a", tmp_path / "vae", **kwargs)
    train.train_dit(tmp_path / "b", tmp_path / "vae", stop_after=3, **kwargs)
    train.train_dit(tmp_path / "b", tmp_path / "vae", **kwargs)
    a, b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert a.keys() == b.keys() == {1, 2, 3, 4}
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-5, abs=1e-6), step

    seed_registry_factory(entry_points=True, env={})  # the exported directory loads like any model
    from seed_core.pipeline import load
    from seed_core.requests import GenerateRequest

    pipeline = load(str(tmp_path / "a" / "model"))
    assert pipeline.spec.name == "seedream"
    assert pipeline.run(GenerateRequest("a red circle", steps=2)).images[0].size == (64, 64)

    # the two-file bundle (what comes back from a GPU machine) unpacks into the same model
    from seed_core.weights import load_safetensors

    bundles = train.bundle_checkpoint(tmp_path / "a", tmp_path / "bundle", preset="tiny")
    assert sorted(p.name for p in bundles) == sorted(train.BUNDLES.values())
    bundle = tmp_path / "bundle" / train.BUNDLES["ema"]
    args = [
        "unbundle",
        "--bundle",
        str(bundle),
        "--vae",
        str(tmp_path / "vae"),
        "--to",
        str(tmp_path / "unpacked"),
    ]
    assert train.main(args) == 0  # the command line, which needs no run directory for this stage
    assert json.loads((tmp_path / "unpacked" / "training.json").read_text())["step"] == 4
    for name in ("dit.safetensors", "text_encoder.safetensors"):
        exported = load_safetensors(tmp_path / "a" / "model" / name)
        unpacked = load_safetensors(tmp_path / "unpacked" / name)
        assert exported.keys() == unpacked.keys()
        assert all(torch.equal(exported[k], unpacked[k]) for k in exported)

    # continuing from an exported model trains it (an optimizer made before the weights were assigned
    # once stepped tensors the model no longer held, and the weights never changed)
    kwargs |= {"steps": 6, "warmup": 0, "decay": 0}
    train.train_dit(tmp_path / "c", tmp_path / "vae", init=tmp_path / "a" / "model", **kwargs)
    assert set(_losses(tmp_path / "c")) == {5, 6}  # the step count continues from the model's
    train.export_checkpoint(tmp_path / "c", tmp_path / "vae", tmp_path / "c-live", preset="tiny", live=True)
    for name in ("dit.safetensors", "text_encoder.safetensors"):
        before = load_safetensors(tmp_path / "a" / "model" / name)
        after = load_safetensors(tmp_path / "c-live" / name)
        changed = [k for k in before if not torch.equal(before[k], after[k])]
        assert len(changed) > len(before) // 2, (name, changed)

    # --freeze-text trains the DiT and leaves the text encoder bit for bit (its students stay valid)
    train.train_dit(
        tmp_path / "d", tmp_path / "vae", init=tmp_path / "a" / "model", freeze_text=True, **kwargs
    )
    train.export_checkpoint(tmp_path / "d", tmp_path / "vae", tmp_path / "d-live", preset="tiny", live=True)
    for name, moves in (("dit.safetensors", True), ("text_encoder.safetensors", False)):
        before = load_safetensors(tmp_path / "a" / "model" / name)
        after = load_safetensors(tmp_path / "d-live" / name)
        assert any(not torch.equal(before[k], after[k]) for k in before) == moves, name
    with pytest.raises(ValueError, match="word loss"):
        train.train_dit(tmp_path / "e", tmp_path / "vae", freeze_text=True, word_weight=0.1, **kwargs)


def test_mixed_resolutions_keep_the_token_count():
    sizes = {train.dit_scenes(0, step, 32, resolutions=train.RESOLUTIONS).size for step in range(60)}
    assert sizes == {64, 128, 256}
    big = train.render_scenes(train.dit_scenes(0, 0, 32, size=256))
    assert big.target.shape == (2, 3, 256, 256) and big.task == "generate" and not big.references
    assert train.parse_resolutions("64:0.5,256:0.5") == ((64, 0.5), (256, 0.5))
    for bad in ("64", "64:0.5", "60:1", "64:x"):
        with pytest.raises(ValueError, match="--resolutions"):
            train.parse_resolutions(bad)


def test_edit_batches_hold_every_operation_in_equal_shares():
    from collections import Counter

    ops: Counter[str] = Counter()
    for step in range(400):
        scenes = train.dit_scenes(0, step, 32)
        if scenes.task == "edit":  # which operation made each target: the instruction's first word
            ops.update(p.split()[0] for p in scenes.prompts if p)
    verbs = {"make", "change", "paint", "add", "remove", "delete", "turn", "move"}
    assert set(ops) <= verbs and sum(ops.values()) > 1000
    moves, adds = ops["move"] / sum(ops.values()), ops["add"] / sum(ops.values())
    assert 0.11 < moves < 0.18 and 0.11 < adds < 0.18  # 1/7 each (moves were 6% when skipped)


def test_learning_rate_warms_up_holds_and_decays_to_zero():
    factors = [train.learning_rate_factor(step, step, 10, warmup=4, decay=4) for step in range(10)]
    assert factors == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25])
    # a fresh optimizer on an initialised model (step 100, its first update) warms up again
    assert train.learning_rate_factor(100, 0, 1000, warmup=4, decay=0) == pytest.approx(0.25)
    assert train.learning_rate_factor(5, 5, 10, warmup=0, decay=0) == 1.0
    assert train.parse_decay("1200") == 1200 and train.parse_decay("20%") == pytest.approx(0.2)
    assert train.parse_decay("100%") == 1.0
    for bad in ("-5", "120%", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="decay|steps"):
            train.parse_decay(bad)


def test_a_time_budget_ends_the_run_with_a_checkpoint_and_an_export(tmp_path):
    train.train_vae(tmp_path / "vae", steps=2, batch=2, preset="tiny-f8", log=lambda _: None)
    lines: list[str] = []
    train.train_dit(
        tmp_path / "run",
        tmp_path / "vae",
        steps=100_000,
        batch=2,
        preset="tiny",
        decay=0.2,  # a share of the steps the budget allows
        minutes=0.05,
        log=lines.append,
    )
    last = max(_losses(tmp_path / "run"))
    assert 1 <= last < 100_000
    assert any("time budget" in line for line in lines)
    assert train.load_checkpoint(tmp_path / "run" / train.CHECKPOINT)["step"] == last  # type: ignore[index]
    assert json.loads((tmp_path / "run" / "model" / "training.json").read_text())["step"] == last


def test_profile_writes_the_operator_tables_of_the_steps_asked_for(tmp_path):
    train.train_vae(tmp_path / "vae", steps=2, batch=2, preset="tiny-f8", log=lambda _: None)
    run = tmp_path / "run"
    train.train_dit(
        run, tmp_path / "vae", steps=4, batch=2, preset="tiny", profile=2, profile_after=1, log=lambda _: None
    )
    text = (run / "profile.txt").read_text()
    assert text.startswith("2 steps after step 1 on cpu:")
    calls = int(text.splitlines()[1].split(": ")[1])
    assert calls > 1000  # a step's forward, backward and optimizer
    assert "by self_cpu_time_total:" in text and "aten::" in text


def test_progress_under_a_time_budget_counts_down_the_budget():
    free, budgeted = train.Progress(10_000_000, 0), train.Progress(10_000_000, 0, budget=120.0)
    free.started = budgeted.started = free.started - 1.0  # one second in, one step done
    assert float(free.line(1, 0.1).split("eta ")[1].split()[0]) > 1000  # minutes at one step a second
    assert 1.9 <= float(budgeted.line(1, 0.1).split("eta ")[1].split()[0]) <= 2.0  # the budget left


def test_the_word_loss_pulls_the_tokens_of_shape_words_apart():
    from seed_dit.text import MiniTextEncoder

    torch.manual_seed(0)
    text = MiniTextEncoder(dim=32, layers=1, heads=2, vocab=512, max_length=8)
    prompts = [f"a {c} {s}" for c in ("red", "blue") for s in ("circle", "square", "hexagon")]
    circle, square = prompts.index("a red circle"), prompts.index("a red square")
    index = train.word_index(text.tokenizer(prompts)[0])

    def shape_token_cosine() -> float:  # the third token is the shape word
        tokens = text.encode(prompts).tokens
        return float(torch.nn.functional.cosine_similarity(tokens[circle, 2], tokens[square, 2], dim=0))

    first, before = float(train.word_loss(text, index, text.encode(prompts).tokens)), shape_token_cosine()
    opt = torch.optim.Adam(text.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        train.word_loss(text, index, text.encode(prompts).tokens).backward()
        opt.step()
    last = float(train.word_loss(text, index, text.encode(prompts).tokens))
    assert last < 0.2 * first  # every word named from its own token
    assert shape_token_cosine() < before - 0.3, (before, shape_token_cosine())


def test_pooled_dropout_zeroes_the_pooled_vector_of_that_share_of_samples():
    from seed_vae import Autoencoder, AutoencoderConfig

    torch.manual_seed(0)
    vae = Autoencoder(AutoencoderConfig.preset("tiny-f8"))
    dit, text = train.build_dit("tiny", vae.cfg.latent_channels)
    data = train.render_scenes(train.dit_scenes(0, 0, 64, drop_text=0.0), "cpu")
    assert all(data.prompts)
    seen: list[torch.Tensor] = []
    dit.pooled_in.register_forward_hook(lambda module, args, out: seen.append(args[0].detach()))

    def zeroed(share: float) -> torch.Tensor:  # (B,) True where the pooled vector reached the DiT as 0
        train.dit_loss(dit, text, vae, data, torch.Generator().manual_seed(1), pooled_drop=share)
        return (seen[-1] == 0).all(dim=1)

    assert not zeroed(0.0).any()
    assert zeroed(1.0).all()
    assert 0.25 < zeroed(0.5).float().mean() < 0.75  # about half of the batch
    with pytest.raises(ValueError, match="pooled_drop"):
        train.train_dit(Path("unused"), Path("unused"), steps=1, pooled_drop=1.5)


def test_worker_processes_draw_the_same_batches():
    resolutions = train.RESOLUTIONS
    alone = train.dit_batches(0, 5, 8, resolutions)
    pooled = train.dit_batches(0, 5, 8, resolutions, workers=2)
    try:
        for _ in range(6):
            a, b = next(alone), next(pooled)
            assert (a.task, a.prompts) == (b.task, b.prompts)
            assert torch.equal(a.target, b.target)
            assert len(a.references) == len(b.references)
            assert all(torch.equal(x, y) for x, y in zip(a.references, b.references, strict=True))
    finally:
        pooled.close()


def test_init_puts_the_loaded_weights_on_the_training_device(tmp_path):
    # the first GPU run failed here: load_into assigned the file's CPU tensors to models already on CUDA
    dit, text = train.build_dit("tiny", 4)
    save_file({k: v.contiguous() for k, v in dit.state_dict().items()}, tmp_path / "dit.safetensors")
    save_file(text.state_dict(), tmp_path / "text_encoder.safetensors")
    (tmp_path / "training.json").write_text('{"step": 7}')
    fresh_dit, fresh_text = (m.to("meta") for m in train.build_dit("tiny", 4))
    assert train.init_from(tmp_path, fresh_dit, fresh_text, "meta") == 7
    tensors = [*fresh_dit.state_dict().values(), *fresh_text.state_dict().values()]
    assert {t.device.type for t in tensors} == {"meta"}


def test_a_training_step_keeps_every_tensor_on_the_device(monkeypatch):
    """The recipe's GPU path without a GPU: the step runs on fake CUDA tensors (shapes and devices only),
    so a tensor made on the CPU inside rendering, the encoders or the DiT fails here as it would there."""
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

    from seed_dit.training import EMA
    from seed_vae import Autoencoder, AutoencoderConfig

    by_task = {}
    for step in range(40):  # one batch of each task, and one of a larger size
        scenes = train.draw_packed(0, step, 4, resolutions=train.RESOLUTIONS)  # as a worker sends it
        by_task.setdefault((scenes.task, scenes.size), scenes)
    assert {task for task, _ in by_task} == {"generate", "edit", "compose"}
    assert {size for _, size in by_task} > {64}
    vae = Autoencoder(AutoencoderConfig.preset("tiny-f8"))
    dit, text = train.build_dit("tiny", vae.cfg.latent_channels)

    # a data-dependent branch on the CPU (an image-guidance dropout draw) cannot be decided on fake values:
    # take one side; on a CUDA tensor it is a device sync, which a step must not make
    def branch(self: FakeTensor) -> bool:
        if self.device.type != "cpu":
            raise AssertionError(f"a step asked a {self.device.type} tensor for a Python bool: a device sync")
        return False

    monkeypatch.setattr(FakeTensor, "__bool__", branch, raising=False)
    # pinned memory needs a CUDA runtime: mark what would be pinned, so the copies can be checked for it
    monkeypatch.setattr(world, "_can_pin", lambda: True)
    monkeypatch.setattr(torch.Tensor, "pin_memory", BlockingCopies.pin, raising=False)
    mode = FakeTensorMode(allow_non_fake_inputs=True)

    def to_fake_cuda(module: torch.nn.Module) -> None:
        for m in module.modules():
            for name, p in list(m._parameters.items()):
                if p is not None:
                    m._parameters[name] = torch.nn.Parameter(mode.from_tensor(p.detach()).to("cuda"))
            for name, b in list(m._buffers.items()):
                if b is not None:
                    m._buffers[name] = mode.from_tensor(b).to("cuda")

    with mode:
        for module in (vae, dit, text):
            to_fake_cuda(module)
        ema = EMA(dit)
        with BlockingCopies() as blocking:
            for scenes in by_task.values():
                data = train.render_scenes(scenes, "cuda")
                loss, named = train.dit_loss(
                    dit, text, vae, data, torch.Generator().manual_seed(0), words=True, pooled_drop=0.5
                )
                assert loss.device.type == "cuda" and loss.shape == ()
                assert named is not None and named.device.type == "cuda" and named.shape == ()
                ema.update(
                    dit
                )  # the backward pass needs a real CUDA context; the forward is where devices mix
    # a copy from the host that waits (non_blocking=False) drains the GPU's queue: the host could not run
    # ahead of the device, and a small model's step would cost the host's time plus the device's
    assert blocking.copies == [], blocking.copies


class BlockingCopies(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the copies from the CPU to another device that would wait: not asked to be non-blocking,
    or from memory that is not pinned (a non-blocking copy from pageable memory is staged by the host)."""

    def __init__(self) -> None:
        super().__init__()
        self.copies: list[str] = []

    @staticmethod
    def pin(tensor: torch.Tensor) -> torch.Tensor:  # stands in for Tensor.pin_memory
        tensor._test_pinned = True  # type: ignore[attr-defined]
        return tensor

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        source = args[0] if args else None
        if func is torch.ops.aten._to_copy.default and isinstance(source, torch.Tensor):
            target = kwargs.get("device")
            if source.device.type == "cpu" and target is not None and torch.device(target).type != "cpu":
                if not kwargs.get("non_blocking", False) or not getattr(source, "_test_pinned", False):
                    ours = [f for f in traceback.extract_stack() if "/src/seed_" in f.filename]
                    where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
                    self.copies.append(f"{tuple(source.shape)} {source.dtype} at {where}")
        return func(*args, **kwargs)


def test_auto_precision_uses_bf16_only_where_it_runs_natively(monkeypatch):
    assert train.resolve_precision("fp32", "cuda") == "fp32"
    assert train.resolve_precision("bf16", "cpu") == "bf16"
    assert train.resolve_precision("auto", "cuda") == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert train.resolve_precision("auto", "cpu") == "fp32"  # emulated bf16 is 25x slower there
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert train.resolve_precision("auto", "cpu") == "bf16"
