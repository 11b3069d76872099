from __future__ import annotations

import pytest
import torch

from seed_dit.config import MMDiTConfig
from seed_dit.model import Conditioning, MMDiT
from seed_dit.rope import apply_rope, image_positions, rope_frequencies, text_positions
from seed_dit.training import EMA, REPAProjector, flow_matching_loss, logit_normal_timesteps, make_flow_batch


def _cond(
    cfg: MMDiTConfig, b: int, lt: int = 5, refs: tuple[torch.Tensor, ...] = (), task: int = 0
) -> Conditioning:
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(b, lt, dtype=torch.bool)
    mask[0, 3:] = False  # padding in the first prompt
    return Conditioning(
        text=torch.randn(b, lt, cfg.text_dim, generator=g),
        text_mask=mask,
        pooled=torch.randn(b, cfg.pooled_dim, generator=g),
        task=torch.full((b,), task),
        references=refs,
    )


def _model(**overrides) -> MMDiT:
    torch.manual_seed(0)
    model = MMDiT(MMDiTConfig.preset("tiny", **overrides))
    with torch.no_grad():  # break adaLN-Zero so gradients reach every weight
        for p in model.parameters():
            if float(p.abs().sum()) == 0.0:
                p.normal_(std=0.02)
    return model


@pytest.mark.parametrize(("task", "n_refs"), [(0, 0), (1, 1), (2, 2), (2, 4)])
def test_forward_backward_shapes_for_every_task(task, n_refs):
    model = _model()
    x = torch.randn(2, 4, 8, 12)
    refs = tuple(torch.randn(2, 4, 8 + 2 * i, 8) for i in range(n_refs))  # references may differ in size
    out = model(x, torch.rand(2), _cond(model.cfg, 2, refs=refs, task=task))
    assert out.shape == x.shape
    out.square().mean().backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert unused == [], unused


def test_bfloat16_weights_take_float32_inputs():
    model = _model().to(torch.bfloat16)
    refs = (torch.randn(1, 4, 8, 8),)
    out = model(torch.randn(1, 4, 8, 8), torch.rand(1), _cond(model.cfg, 1, refs=refs))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_too_many_references_refused():
    model = _model()
    refs = tuple(torch.randn(1, 4, 8, 8) for _ in range(model.cfg.max_references + 1))
    with pytest.raises(ValueError, match="at most 4"):
        model(torch.randn(1, 4, 8, 8), torch.rand(1), _cond(model.cfg, 1, refs=refs))


def test_padding_tokens_do_not_matter():
    model = _model().eval()
    x, t = torch.randn(1, 4, 8, 8), torch.rand(1)
    cond = _cond(model.cfg, 1)
    other = Conditioning(cond.text.clone(), cond.text_mask, cond.pooled, cond.task)
    other.text[0, 3:] = 100.0  # change only the padded positions
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, cond), model(x, t, other))


def test_guidance_embedding_and_hidden_states():
    model = _model(guidance_embed=True)
    cond = _cond(model.cfg, 2)
    cond.guidance = torch.tensor([1.0, 5.0])
    out, hidden = model(torch.randn(2, 4, 8, 8), torch.rand(2), cond, return_hidden=1)
    assert out.shape == (2, 4, 8, 8) and hidden.shape == (2, 16, model.cfg.hidden)
    with pytest.raises(ValueError, match="has 2 blocks"):
        model(torch.randn(2, 4, 8, 8), torch.rand(2), cond, return_hidden=9)


def test_rope_scores_depend_only_on_relative_position():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 2, 1, 16, generator=g), torch.randn(1, 2, 1, 16, generator=g)
    axes = (4, 6, 6)

    def score(pq, pk):
        aq = rope_frequencies(torch.tensor([[pq]], dtype=torch.float32), axes, 10000.0)
        ak = rope_frequencies(torch.tensor([[pk]], dtype=torch.float32), axes, 10000.0)
        return (apply_rope(q, aq) * apply_rope(k, ak)).sum(-1)

    base = score((0, 3, 5), (1, 7, 2))
    torch.testing.assert_close(score((2, 13, 20), (3, 17, 17)), base, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(score((0, 3, 5), (1, 7, 3)), base)
    # rotation keeps norms
    a = rope_frequencies(torch.tensor([[(1.0, 2.0, 3.0)]]), axes, 10000.0)
    torch.testing.assert_close(apply_rope(q, a).norm(dim=-1), q.norm(dim=-1))


def test_cross_modality_positions():
    img = image_positions(2, 3, index=1)
    assert img.tolist() == [[1, 0, 0], [1, 0, 1], [1, 0, 2], [1, 1, 0], [1, 1, 1], [1, 1, 2]]
    txt = text_positions(3, start=3)
    assert txt.tolist() == [[0, 3, 3], [0, 4, 4], [0, 5, 5]]  # after the image on both axes


def test_position_interpolation():
    model = _model().eval()
    x, t = torch.randn(1, 4, 8, 8), torch.rand(1)
    cond = _cond(model.cfg, 1)
    with torch.no_grad():
        plain = model(x, t, cond)
        cond.position_scale = 0.5
        scaled = model(x, t, cond)
        # the same as positions (index, row / 2, column / 2) with the text from 2: a 4x4 grid's span
        import seed_dit.model as mmdit

        original = mmdit.image_positions, mmdit.text_positions
        mmdit.image_positions = lambda h, w, i, d: (
            original[0](h, w, i, d).double() * torch.tensor([1.0, 0.5, 0.5], dtype=torch.float64)
        )
        mmdit.text_positions = lambda n, start, d: original[1](n, start // 2, d).double()
        try:
            cond.position_scale = 1.0
            by_hand = model(x, t, cond)
        finally:
            mmdit.image_positions, mmdit.text_positions = original
    assert not torch.allclose(plain, scaled)
    torch.testing.assert_close(scaled, by_hand)


def test_patchify_round_trip():
    model = _model()
    x = torch.randn(2, 4, 6, 10)
    assert model.patchify(x).shape == (2, 15, 16)
    torch.testing.assert_close(model.unpatchify(model.patchify(x), 6, 10), x)
    with pytest.raises(ValueError, match="not a multiple of the patch size"):
        model.patchify(torch.randn(1, 4, 5, 6))


@pytest.mark.parametrize(("preset", "low", "high"), [("1b", 1.0e9, 2.0e9), ("8b", 7.5e9, 9.0e9)])
def test_large_presets_on_the_meta_device(preset, low, high):
    from seed_core.weights import build_on_meta, count_parameters

    model = build_on_meta(lambda: MMDiT(MMDiTConfig.preset(preset)))
    n = count_parameters(model)
    assert low < n < high
    assert all(p.is_meta for p in model.parameters())


def test_config_validation():
    with pytest.raises(ValueError, match="sum to the head size"):
        MMDiTConfig(hidden=64, heads=4, rope_axes=(4, 4, 4))
    assert MMDiTConfig.from_json(MMDiTConfig.preset("mini").to_json()) == MMDiTConfig.preset("mini")


def test_tiny_dit_overfits_a_fixed_batch():
    """Honest learning: on one fixed batch (fixed noise and times) the loss falls by 10x."""
    torch.manual_seed(0)
    model = MMDiT(MMDiTConfig.preset("tiny"))
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 4, 8, 8, generator=g)
    batch = make_flow_batch(x0, logit_normal_timesteps(4, generator=g), generator=g)
    cond = _cond(model.cfg, 4)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss = flow_matching_loss(model(batch.x_t, batch.t, cond), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def test_training_helpers():
    t = logit_normal_timesteps(4096, generator=torch.Generator().manual_seed(0))
    assert 0 < t.min() and t.max() < 1 and abs(t.median().item() - 0.5) < 0.03
    shifted = logit_normal_timesteps(4096, shift=3.0, generator=torch.Generator().manual_seed(0))
    assert shifted.median() > 0.7  # shift moves training toward high noise
    x0 = torch.randn(2, 4, 4, 4)
    noise = torch.randn(2, 4, 4, 4)
    batch = make_flow_batch(x0, torch.tensor([0.0, 1.0]), noise)
    torch.testing.assert_close(batch.x_t[0], x0[0])
    torch.testing.assert_close(batch.x_t[1], noise[1])
    torch.testing.assert_close(batch.target, noise - x0)

    repa = REPAProjector(hidden=8, feature_dim=6, width=16)
    hidden, features = torch.randn(2, 5, 8), torch.randn(2, 5, 6)
    loss = repa.loss(hidden, features)
    assert 0 <= loss.item() <= 2
    loss.backward()
    with pytest.raises(ValueError, match="token grid"):
        repa.loss(hidden, torch.randn(2, 4, 6))

    net = torch.nn.Linear(2, 2)
    ema = EMA(net, decay=0.5, updates=100)  # past the warm-up: the decay is 0.5
    before = ema.shadow.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    torch.testing.assert_close(ema.shadow.weight, before + 0.5)
    fresh = EMA(net, decay=0.999)  # first update: decay 1/10, so the average follows the live weights
    with torch.no_grad():
        net.weight.add_(1.0)
    fresh.update(net)
    torch.testing.assert_close(fresh.shadow.weight, net.weight - 0.1)
