"""Peak memory counted on real and fake tensors (`seed_core.memory`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seed_core.memory import fake_device, module_bytes, track


def test_counts_what_operators_allocate_and_release() -> None:
    with track("cpu") as t:
        a = torch.empty(1000)  # 4,000 bytes
        assert t.now == t.peak == 4000
        view, part = a.view(10, 100), a[:10]  # views share the storage: nothing new
        a.add_(1)  # in place: nothing new
        assert t.now == 4000
        b = a * 2
        assert t.now == 8000
        del b
        assert t.now == 4000 and t.peak == 8000
        t.reset()
        assert t.peak == 4000
        del a, part
        assert t.now == 4000  # `view` still holds the storage
        del view
        assert t.now == 0


def test_only_the_chosen_device_type_and_held_inputs_count() -> None:
    outside = torch.empty(250)
    with track("cuda") as t:  # nothing here is on a GPU
        torch.empty(1000) + 1
        assert t.peak == 0
    with track("cpu") as t:
        transposed = outside.view(10, 25).t()  # a view of a tensor made before: nothing new
        assert t.now == 0
        t.hold(outside)
        assert t.now == 1000
        del outside
        assert t.now == 1000  # the view keeps it alive (its base)
        del transposed
        assert t.now == 0


def test_fake_tensors_count_a_large_model_without_memory() -> None:
    with fake_device(torch.bfloat16) as device:
        with device:
            layer = torch.nn.Linear(16384, 16384)  # 512 MiB of bf16 weights, never allocated
        assert layer.weight.device.type == "cuda" and layer.weight.dtype == torch.bfloat16
        assert module_bytes(layer) == (16384 * 16384 + 16384) * 2
        x = torch.zeros(8, 4096, 16384, device=device, dtype=torch.bfloat16)
        with track() as t:
            t.hold(x)
            layer(x)
        assert t.peak == 2 * 8 * 4096 * 16384 * 2  # input and output
    assert torch.get_default_dtype() == torch.float32


def test_attention_counts_as_a_fused_kernel_not_as_the_score_matrix() -> None:
    n, d = 4096, 64
    scores = n * n * 2  # one (N, N) bf16 matrix per head
    with fake_device(torch.bfloat16) as device:
        q = torch.zeros(1, 2, n, d, device=device)
        with track() as fused:
            F.scaled_dot_product_attention(q, q, q)
        with track(fused_attention=False) as composite:
            F.scaled_dot_product_attention(q, q, q)
    assert fused.peak <= q.numel() * 2 + 2 * n * 4  # the output and a float per row
    assert composite.peak >= 2 * scores  # fake tensors take the composite path, which makes the scores
