"""PARO: permutations, calibration, plans, the backends through seed-core's dispatch, and `--accel paro`
end to end on the tiny random Seedream (CPU)."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from seed_attn import ops
from seed_attn.paro import Calibrator, ParoPlan, PlanError, order_permutation, sequence_permutation
from seed_cli.main import create_app
from seed_core.attention import attention
from seed_core.errors import AcceleratorError, AttentionInputError, UsageError
from seed_core.pipeline import load
from seed_core.requests import EditRequest, GenerateRequest

MODEL = "seedream-tiny-random"
SIZE = {"width": 256, "height": 256}  # tiny-f8 + patch 2: a 16x16 grid, 256 image tokens, 5 blocks of 64


def test_permutations():
    assert order_permutation((2, 3), "hw").tolist() == [0, 1, 2, 3, 4, 5]
    assert order_permutation((2, 3), "wh").tolist() == [0, 3, 1, 4, 2, 5]
    video = order_permutation((2, 2, 3), "wfh")
    assert sorted(video.tolist()) == list(range(12)) and video[:4].tolist() == [0, 3, 6, 9]
    seq = sequence_permutation(2, (2, 3), 10, "wh")
    assert seq.tolist() == [0, 1, 2, 5, 3, 6, 4, 7, 8, 9]  # text and trailing tokens stay


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory):
    from seed_attn.calibrate import calibrate
    from seed_core.registry import Registry, use_registry

    out = tmp_path_factory.mktemp("paro")
    with use_registry(Registry.from_plugins(entry_points=True, env={})):
        path, _ = calibrate(MODEL, size=(256, 256), prompts=["a red circle", "two squares"], steps=2, out=out)
    assert path.parent == out
    return out


@pytest.fixture()
def registry(seed_registry_factory):
    return seed_registry_factory(entry_points=True, env={})


def _image(pipeline_or_name, accel=(), prompt="a red circle left of a blue square"):
    pipeline = (
        load(pipeline_or_name, accelerators=list(accel))
        if isinstance(pipeline_or_name, str)
        else pipeline_or_name
    )
    return np.asarray(pipeline.run(GenerateRequest(prompt, seed=3, steps=2, **SIZE)).images[0]).astype(float)


def _psnr(a, b):
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def test_calibrated_plan(plan_dir):
    path = next(plan_dir.glob("*.json"))
    plan = ParoPlan.load(path)
    assert plan.grid == (16, 16) and plan.length == plan.prefix + 256 and plan.block == 64
    n = -(-plan.length // 64)
    assert plan.mass.shape == (4, plan.layers, plan.orders.shape[1], n, n)
    assert set(plan.orders.unique().tolist()) <= {0, 1}
    masks = plan.block_masks(0.5)
    assert masks[..., 0, :].all() and masks[..., :, 0].all()  # the text block's rows and columns
    assert masks[..., torch.arange(n), torch.arange(n)].all()  # the diagonal
    assert abs(float(masks.float().mean()) - 0.5) < 1 / n**2 + 1e-6
    assert plan.block_masks(1.0).all()
    info = json.loads(path.read_text())
    assert info["density"] == 0.3 and info["bits"] == 8 and len(info["meta"]["sparse_metric"]) == plan.layers


def test_the_plans_defaults_are_recorded_with_the_output(registry, plan_dir):
    """Density and bits left to the plan (calibrated with 0.3 and 8) appear in the accelerator's record,
    which is what an output's metadata carries; given ones are kept as given."""
    pipeline = load(MODEL, accelerators=[f"paro:plan={plan_dir}"])
    result = pipeline.run(GenerateRequest("a red circle", seed=0, steps=1, **SIZE))
    options = result.accelerators[0].options
    assert (options["density"], options["bits"]) == (0.3, 8)
    pipeline = load(MODEL, accelerators=[f"paro:plan={plan_dir},density=0.5"])
    result = pipeline.run(GenerateRequest("a red circle", seed=0, steps=1, **SIZE))
    assert (result.accelerators[0].options["density"], result.accelerators[0].options["bits"]) == (0.5, 8)


def test_a_density_schedule_gives_each_sampled_step_its_own_masks(registry, tmp_path, monkeypatch):
    """The plan records the flow times of the steps calibration sampled; a schedule gives each its own
    density, noise to clean, even where both steps share one timestep group's masses (groups=1 here)."""
    from seed_attn.calibrate import calibrate

    plan_dir = tmp_path / "plan"
    _, plan = calibrate(MODEL, size=(256, 256), prompts=["a red circle"], steps=2, out=plan_dir, groups=1)
    steps = plan.steps()
    assert len(steps) == 2 and steps[0] == 1.0 > steps[1] and plan.visited_groups() == [0]
    masks = plan.step_masks((0.6, 1.0))  # 5x5 blocks; 13 forced (text row and column, diagonal)
    assert (masks[0].sum((-1, -2)) == 15).all() and masks[1].all()
    assert torch.equal(masks[0], plan.block_masks(0.6)[0])
    with pytest.raises(PlanError, match=r"calibrated on 2 sampling steps \(t 1 / 0\.\d+\); give 2"):
        plan.step_masks((0.5, 0.5, 0.5))

    # end to end: every attention call of a step runs that step's masks (kept blocks per call, by t)
    from seed_attn import backends
    from seed_core.attention import current_attention_context

    kept: dict[float, set[int]] = {}
    original = ops.sparse_attention

    def sparse_attention(*args, **kwargs):
        t = round(float(current_attention_context().t.flatten()[0]), 4)
        kept.setdefault(t, set()).add(int(args[3].count.sum()) // int(args[3].count.shape[1]))  # per head
        return original(*args, **kwargs)

    monkeypatch.setattr(backends.ops, "sparse_attention", sparse_attention)
    for schedule, expected in (("0.6/1", (15, 25)), ("1/0.6", (25, 15))):
        kept.clear()
        _image(MODEL, [f"paro:plan={plan_dir},schedule={schedule}"])
        assert [kept[t] for t in sorted(kept, reverse=True)] == [{expected[0]}, {expected[1]}], schedule
    pipeline = load(MODEL, accelerators=[f"paro:plan={plan_dir},schedule=0.6/1"])
    result = pipeline.run(GenerateRequest("a red circle", seed=0, steps=2, **SIZE))
    options = result.accelerators[0].options
    assert (options["schedule"], options["bits"]) == ("0.6/1", 8) and options.get("density") is None
    (prepared,) = pipeline.paro.prepared.values()
    assert abs(prepared.density - (15 / 25 + 1) / 2) < 1e-6  # achieved over the two sampled steps
    assert [prepared.slot_of(t) for t in (1.0, steps[1])] == [0, 1]
    with pytest.warns(RuntimeWarning, match="is not one this schedule was calibrated on") as caught:
        assert [prepared.slot_of(t) for t in (0.9, 0.1)] == [0, 1]  # the nearest calibrated step
    assert sorted(str(w.message).split(" is not")[0][-3:] for w in caught) == ["0.1", "0.9"]
    for bad, message in (("schedule=0.2/x", "separated by '/'"), ("schedule=0.5,density=0.5", "not both")):
        with pytest.raises(AcceleratorError, match=message):
            load(MODEL, accelerators=[f"paro:plan={plan_dir},{bad}"])
    result = CliRunner().invoke(
        create_app(),
        ["generate", "a red circle", "-m", MODEL, "--steps", "2", "--size", "256", "-o",
         str(plan_dir / "x.png"), "--accel", f"paro:plan={plan_dir},schedule=0.3/0.3/0.3"],
    )  # fmt: skip
    assert result.exit_code == 2 and "give 2 densities" in result.output and "Traceback" not in result.output


def test_calibrate_can_keep_another_plans_orders(registry, plan_dir, tmp_path):
    """`--orders-from DIR`: the masses are calibrated again, the token orders are the given plan's."""
    from seed_attn.calibrate import calibrate

    source = ParoPlan.load(next(plan_dir.glob("*.json")))
    source.orders = 1 - source.orders  # every head the other way
    source.save(tmp_path / "flipped")
    _, plan = calibrate(
        MODEL, size=(256, 256), prompts=["a red circle"], steps=2, out=tmp_path / "out",
        orders_from=tmp_path / "flipped",
    )  # fmt: skip
    assert torch.equal(plan.orders, source.orders) and plan.meta["order_score"] == "given"
    with pytest.raises(UsageError, match="no plan there for this size"):
        calibrate(MODEL, size=(256, 256), prompts=["a"], steps=1, out=tmp_path / "o2", orders_from=tmp_path)
    with pytest.raises(UsageError, match="does not take --order-score"):
        calibrate(MODEL, prompts=["a"], out=tmp_path / "o3", orders_from=plan_dir, order_score="error")


def test_the_error_order_score_keeps_the_order_whose_masks_hold_the_attention():
    """Every token attends to its own column of a 16x16 grid: in the column-first order ("wh") a column is
    one 16-token block, so the diagonal blocks hold all the attention; in the row-first order every key
    block holds 1/16 of it. At density 0.25 the error score must measure the first as near exact and the
    second as far off, and keep "wh"; the statistics pass is not recorded twice."""
    grid, length = (16, 16), 256
    column = torch.nn.functional.one_hot(torch.arange(length) % 16, 16).float()  # (L, 16), row-major tokens
    q = k = (column * 10)[None, None].repeat(1, 2, 1, 1)  # (1, 2 heads, L, 16): same column -> logit 10
    v = torch.randn(1, 2, length, 16, generator=torch.Generator().manual_seed(0))
    calibrator = Calibrator(block=16, groups=1, order_score="error", density=0.25, bits=16)
    calibrator.record(0, 1.0, q, k, None, 0, grid, 0.1, v=v)
    calibrator.begin_error_pass()
    calibrator.record(0, 1.0, q, k, None, 0, grid, 0.1, v=v)
    plan = calibrator.plan("m", 0.25, 16)
    error = torch.tensor(plan.meta["order_error"])  # (layers, orders, heads)
    assert plan.orders.tolist() == [[1, 1]] and plan.meta["order_score"] == "error"
    assert (error[0, 1] < 1e-3).all() and (error[0, 0] > 0.3).all(), error
    assert calibrator.calls == 1 and plan.meta["times"] == [[1.0]]
    kept = plan.block_masks(0.25)[0, 0, 0]  # the masks the plan builds with its orders: the diagonal
    assert kept[torch.arange(16), torch.arange(16)].all()


def test_calibrate_with_the_error_score_runs_the_prompts_twice(registry, tmp_path):
    from seed_attn.calibrate import calibrate

    ticks = []
    _, plan = calibrate(
        MODEL, size=(256, 256), prompts=["a red circle"], steps=2, out=tmp_path, order_score="error",
        tick=ticks.append,
    )  # fmt: skip
    error = torch.tensor(plan.meta["order_error"])
    assert ticks == ["a red circle"] * 2 and error.shape == (plan.layers, 2, plan.orders.shape[1])
    assert torch.equal(plan.orders, error.argmin(1)) and plan.meta["calls"] == 2 * plan.layers
    assert (error > 0).all() and (error < 1).all()  # density 0.3, 8 bits: off, but not unrelated


def test_a_partial_last_query_block_keeps_its_share():
    """Blocks rank by mass per query row: a last query block of 16 rows (of 64) whose rows attend as
    sharply as the others' keeps as many blocks as they do (ranked by total mass, it kept only the
    forced ones)."""
    n, length = 5, 4 * 64 + 16
    rows = torch.tensor([64.0, 64, 64, 64, 16])
    mass = torch.zeros(1, 1, 1, n, n)
    for i in range(n):  # each row: 0.5 on its own block, 0.2 on the next one, 0.1 on each of the others
        mass[..., i, :] = 0.1 * rows[i]
        mass[..., i, i] = 0.5 * rows[i]
        mass[..., i, (i + 1) % n] = 0.2 * rows[i]
    plan = ParoPlan("m", 0, (1, length), length, 64, torch.zeros(1, 1, dtype=torch.long), mass, mass)
    masks = plan.block_masks(0.4)[0, 0, 0]  # 10 of 25 blocks: the diagonal and the 'next' of each row
    assert masks.sum(-1).tolist() == [2, 2, 2, 2, 2]
    assert masks[4, 0] and masks[torch.arange(4), torch.arange(1, 5)].all()


def test_full_density_16_bit_paro_is_exact_attention(registry, plan_dir):
    dense = _image(MODEL)
    exact = _image(MODEL, [f"paro:plan={plan_dir},density=1,bits=16"])  # permuted, every block kept
    assert _psnr(exact, dense) > 45
    with warnings.catch_warnings():  # "FlexAttention runs unfused off CUDA"
        warnings.simplefilter("ignore", RuntimeWarning)
        flex = _image(MODEL, [f"paro:plan={plan_dir},density=1,bits=16,kernel=flex"])
    assert _psnr(flex, dense) > 45
    sparse = _image(MODEL, [f"paro:plan={plan_dir},density=0.3,bits=8"])
    assert np.isfinite(sparse).all() and _psnr(sparse, dense) < _psnr(exact, dense)


def test_a_draft_runs_exact_attention_and_its_refine_the_plan(registry, plan_dir):
    import dataclasses

    dense, paro = load(MODEL), load(MODEL, accelerators=[f"paro:plan={plan_dir},density=0.3,bits=8"])
    for pipeline in (dense, paro):  # a draft at 128 px: a layout the 256-px plan does not cover
        pipeline.config = dataclasses.replace(pipeline.config, draft_side=128)
    d, p = _image(dense), _image(paro)
    assert paro.run(GenerateRequest("x", steps=2, **SIZE)).settings["draft"] == [128, 128]
    assert [key[1] for key in paro.paro.prepared] == [(16, 16)]  # the plan ran on the refine only
    assert paro.dit.dual_blocks[0].attn.attention_backend == "paro"  # and is back in place
    assert np.isfinite(p).all() and 20 < _psnr(p, d) < 60


def test_paro_errors_name_the_fix(registry, plan_dir, tmp_path):
    with pytest.raises(PlanError, match="seed calibrate -m seedream-tiny-random --accel paro"):
        load(MODEL, accelerators=[f"paro:plan={tmp_path}"])
    pipeline = load(MODEL, accelerators=[f"paro:plan={plan_dir}"])
    with pytest.raises(PlanError, match="no PARO plan for this layout"):
        pipeline.run(GenerateRequest("a red circle", steps=1, width=128, height=128))
    with pytest.raises(PlanError, match="text-to-image"):
        from PIL import Image

        Image.new("RGB", (256, 256)).save(tmp_path / "src.png")
        pipeline.run(EditRequest("make it red", image=str(tmp_path / "src.png"), steps=1))
    with pytest.raises(AcceleratorError, match="density"):
        load(MODEL, accelerators=[f"paro:plan={plan_dir},density=2"])
    # a plan whose tensors do not fit its layout is refused with the shape named
    bad = tmp_path / "bad"
    bad.mkdir()
    json_path = next(plan_dir.glob("*.json"))
    (bad / json_path.name).write_text(json_path.read_text().replace('"length": ', '"length": 1'))
    (bad / "broken.json").write_text("{not json")
    with pytest.raises(PlanError, match="not a PARO plan"):
        ParoPlan.load(bad / "broken.json")
    info = json.loads(json_path.read_text())
    for key, value, message in (
        ("density", "x", "density 'x' is not in"),
        ("block", 6.5, "block 6.5 is not"),
    ):
        (bad / "typed.json").write_text(
            json.dumps({**info, key: value})
        )  # "x" had been a TypeError traceback
        with pytest.raises(PlanError, match=message):
            ParoPlan.load(bad / "typed.json")
    from seed_core.weights import load_safetensors, save_safetensors

    save_safetensors(
        load_safetensors(json_path.with_suffix(".safetensors")), bad / (json_path.stem + ".safetensors")
    )
    with pytest.raises(PlanError, match="mass has shape"):
        ParoPlan.load(bad / json_path.name)
    # and on the command line: one line, exit code 2
    result = CliRunner().invoke(
        create_app(), ["generate", "a red circle", "-m", MODEL, "--accel", f"paro:plan={tmp_path / 'none'}"]
    )
    assert result.exit_code == 2 and "seed calibrate" in result.output and "Traceback" not in result.output


def test_int8_backends_through_the_dispatch(registry):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 100, 32, generator=gen) for _ in range(3))
    keys = torch.ones(2, 1, 1, 100, dtype=torch.bool)
    keys[0, ..., 90:] = False
    dense = attention(q, k, v, mask=keys)
    for backend, bound in (("int8", 0.02), ("int8-pv8", 0.03)):
        out = attention(q, k, v, mask=keys, backend=backend)
        assert float((out - dense).norm() / dense.norm()) < bound
    with pytest.raises(AttentionInputError, match="NaN or inf"):
        attention(q.masked_fill(q > 3, float("nan")), k, v, backend="int8")
    with pytest.raises(AttentionInputError, match="--accel paro"):
        attention(q, k, v, backend="paro")


def test_flex_backend_dense_matches_sdpa(registry):
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 128, 16, generator=gen) for _ in range(3))
    out = attention(q, k, v, backend="flex")
    assert float((out - attention(q, k, v)).abs().max()) < 1e-4


@pytest.mark.parametrize("length, block", [(256, 64), (200, 64), (200, 32)])
def test_flex_block_mask_keeps_the_table_blocks(length, block):
    from seed_attn.sparse import BlockLists, block_sparse_attention

    gen = torch.Generator().manual_seed(3)
    n = -(-length // block)
    table = torch.rand(1, 2, n, n, generator=gen) < 0.5
    table[..., torch.arange(n), torch.arange(n)] = True
    q, k, v = (torch.randn(1, 2, length, 16, generator=gen) for _ in range(3))
    mask = ops.flex_block_mask(table, block, length, length)
    assert torch.equal(mask.to_dense()[..., :n, :n].bool(), table)
    expected = block_sparse_attention(q, k, v, BlockLists.from_mask(table, block))
    assert float((ops.flex_attention(q, k, v, mask) - expected).abs().max()) < 1e-4


def test_flex_block_mask_is_built_from_blocks_at_long_sequences():
    # create_block_mask asked for 192 GiB here (it evaluates every query-key pair); the lists are 3 MB
    table = torch.rand(1, 24, 256, 256, generator=torch.Generator().manual_seed(4)) < 0.25
    mask = ops.flex_block_mask(table, 128, 32768, 32768)
    assert torch.equal(mask.full_kv_num_blocks, table.sum(-1, dtype=torch.int32))


def test_custom_op_has_a_fake_implementation():
    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 2, 40, 16, generator=gen) for _ in range(3))
    from seed_attn.sparse import BlockLists

    lists = BlockLists.dense(40, 40, 16)
    perm = torch.stack([torch.randperm(40, generator=gen) for _ in range(2)])
    for order in (None, perm):
        args = (q, k, v, lists.index, lists.count, 16, 8, 16, 0.25, None, None, True, order)
        results = torch.library.opcheck(
            ops._block_sparse_op, args, test_utils=("test_schema", "test_faketensor")
        )
        assert results == {"test_schema": "SUCCESS", "test_faketensor": "SUCCESS"}


def test_the_op_takes_a_per_head_order_in_the_models_order():
    # what the Triton kernel does in its loads and stores, the op's torch path does by gathering: both
    # give block-sparse attention over the reordered sequence, with inputs, mask and output unreordered
    from seed_attn.sparse import BlockLists, block_sparse_attention

    gen = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, 2, 40, 16, generator=gen) for _ in range(3))
    perm = torch.stack([torch.randperm(40, generator=gen) for _ in range(2)])
    table = torch.rand(1, 2, 3, 3, generator=gen) < 0.5
    table[..., torch.arange(3), torch.arange(3)] = True
    lists = BlockLists.from_mask(table, 16)
    keep = torch.ones(2, 1, 1, 40, dtype=torch.bool)
    keep[1, ..., perm[0, :7]] = False  # the second sample's padded keys, in the model's order
    out = ops.sparse_attention(q, k, v, lists, qk_bits=8, mask=keep, perm=perm)
    kept = keep.expand(2, 2, 1, 40).gather(3, perm[None, :, None, :].expand(2, -1, -1, -1))
    ref = block_sparse_attention(*(ops.reorder(x, perm) for x in (q, k, v)), lists, qk_bits=8, mask=kept)
    torch.testing.assert_close(out, ops.reorder(ref, torch.argsort(perm)))
    assert not torch.allclose(out, ops.sparse_attention(q, k, v, lists, qk_bits=8, mask=keep))  # it reorders
    with pytest.raises(AttentionInputError, match="does not fit attention of 2 heads"):
        ops.sparse_attention(q, k, v, lists, perm=perm[:, :39])


def test_paro_backend_masks_heads_and_hook_state(registry, plan_dir):
    from seed_attn.paro import active_layer, layer_scope
    from seed_core.attention import AttentionContext, attention_context, sdpa_attention

    pipeline = load(MODEL, accelerators=[f"paro:plan={plan_dir},density=1,bits=16"])
    plan = ParoPlan.load(next(plan_dir.glob("*.json")))
    heads, length = plan.orders.shape[1], plan.length
    gen = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(2, heads, length, 16, generator=gen) for _ in range(3))
    keep = torch.ones(length, dtype=torch.bool)
    keep[plan.prefix - 5 : plan.prefix] = False  # padded text keys
    context = AttentionContext(plan.prefix, (plan.grid,), torch.full((2,), 0.5))
    with attention_context(context), layer_scope(pipeline.paro, 1):
        for backend in ("paro", "flex"):  # the op reorders inside; FlexAttention is given reordered inputs
            for mask in (keep, keep[None], keep[None, None, None], keep.expand(1, heads, 1, length)):
                out = attention(
                    q, k, v, mask=mask, backend=backend
                )  # full density: exact, whatever the order
                assert float((out - sdpa_attention(q, k, v, mask=mask)).abs().max()) < 1e-4, (
                    backend,
                    mask.shape,
                )
        with pytest.raises(PlanError, match="heads"):
            attention(q[:, :1], k[:, :1], v[:, :1], backend="paro")
        with pytest.raises(AttentionInputError, match="per-key"):
            attention(q, k, v, mask=torch.ones(length, length, dtype=torch.bool), backend="paro")
    # a request that fails inside a layer leaves no layer state behind
    with pytest.raises(PlanError):
        pipeline.run(GenerateRequest("a red circle", steps=1, width=128, height=128))
    assert active_layer() is None


def test_calibrate_refuses_bad_settings_before_sampling(registry, tmp_path):
    app = create_app()
    for args in (["--groups", "0"], ["--alpha", "-3"]):
        result = CliRunner().invoke(app, ["calibrate", "-m", MODEL, "--out", str(tmp_path), *args])
        assert result.exit_code == 2 and "groups >= 1" in result.output, result.output
    result = CliRunner().invoke(app, ["calibrate", "-m", MODEL, "--out", str(tmp_path), "--order-score", "x"])
    assert result.exit_code == 2 and "order score must be 'paro' or 'error'" in result.output, result.output
    result = CliRunner().invoke(app, ["calibrate", "-m", MODEL, "--prompts", str(tmp_path / "none.txt")])
    assert result.exit_code == 2 and "--prompts" in result.output and "cannot read it" in result.output
    for args, message in (
        (["--frames", "-5"], "--frames must be >= 1, got -5"),
        (["--density", "2"], r"--density must be in \(0, 1\], got 2.0"),
        (["--bits", "5"], "--bits must be 16, 8 or 4, got 5"),
    ):
        result = CliRunner().invoke(app, ["calibrate", "-m", MODEL, "--out", str(tmp_path), *args])
        assert result.exit_code == 2 and re.search(message, result.output), result.output
    result = CliRunner().invoke(app, ["calibrate", "-m", MODEL])  # no model directory: name --out at once
    assert result.exit_code == 2 and "--out DIR" in result.output
    result = CliRunner().invoke(app, ["calibrate", "-m", MODEL, "--out", str(tmp_path), "--block", "48"])
    assert result.exit_code == 2 and "--block 48: the kernels take blocks of 32, 64, 128" in result.output


def test_a_plan_of_finer_blocks_runs_its_own_block_size(registry, tmp_path):
    from seed_attn.calibrate import calibrate

    path, plan = calibrate(MODEL, size=(256, 256), prompts=["a red circle"], steps=2, out=tmp_path, block=32)
    assert plan.block == 32 and plan.mass.shape[-2:] == (9, 9)  # 288 tokens in blocks of 32
    assert ParoPlan.load(path).block == 32
    dense = _image(MODEL)
    exact = _image(MODEL, [f"paro:plan={tmp_path},density=1,bits=16"])
    assert _psnr(exact, dense) > 45
    sparse = load(MODEL, accelerators=[f"paro:plan={tmp_path},density=0.5,bits=8"])
    image = _image(sparse)
    prepared = next(iter(sparse.paro.prepared.values()))
    assert prepared.lists[0][0].block == 32 and abs(prepared.density - 0.5) < 0.02
    assert np.isfinite(image).all() and _psnr(image, dense) < _psnr(exact, dense)


def test_flex_and_int8_attention_accelerators_on_a_native_backbone(registry):
    dense = _image(MODEL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # FlexAttention is unfused off CUDA
        assert np.abs(_image(MODEL, ["flex"]) - dense).max() <= 1
    for accel in ("int8-attn", "int8-attn:pv_bits=8"):
        pipeline = load(MODEL, accelerators=[accel])
        assert {m.attention_backend for m in pipeline.dit.modules() if hasattr(m, "attention_backend")} == {
            "int8" if accel == "int8-attn" else "int8-pv8"
        }
        assert np.abs(_image(pipeline) - dense).mean() < 2
    with pytest.raises(AcceleratorError, match="pv_bits must be 16 or 8"):
        load(MODEL, accelerators=["int8-attn:pv_bits=4"])
    with pytest.raises(AcceleratorError, match="conflict|both change"):
        load(MODEL, accelerators=["flex", "int8-attn"])
