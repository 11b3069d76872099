"""Attention backends: block-sparse and low-bit paths against dense attention.

CPU (always): seed-attn's torch block-sparse path against dense torch SDPA at N = 4096 and 16384, as a
ratio measured in the same run. GPU (when CUDA is available): the Triton kernel against FlexAttention on the
same block mask and against cuDNN SDPA, N = 16K / 32K, D = 64 / 128, densities 1.0 / 0.5 / 0.25, bf16 and
INT8; throughput in dense-equivalent TFLOP/s (4·H·N²·D / time, whatever the density).

    uv run python benchmarks/attention.py [--quick] [--json benchmarks/results/attention-cpu.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from seed_attn.sparse import BlockLists, block_sparse_attention


def random_block_mask(heads: int, n_blocks: int, density: float, seed: int = 0) -> torch.Tensor:
    """(1, H, n, n) bool: each row keeps round(density * n) blocks, its diagonal included."""
    gen = torch.Generator().manual_seed(seed)
    keep = max(1, round(density * n_blocks))
    scores = torch.rand(1, heads, n_blocks, n_blocks, generator=gen)
    scores[..., torch.arange(n_blocks), torch.arange(n_blocks)] = 2.0
    top = scores.topk(keep, dim=-1).indices
    return torch.zeros_like(scores, dtype=torch.bool).scatter(-1, top, True)


def cpu_time(fn: Any, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cpu_rows(quick: bool) -> list[dict[str, Any]]:
    rows = []
    heads, d, block = 2, 64, 64
    for n in (4096,) if quick else (4096, 16384):
        gen = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(1, heads, n, d, generator=gen) for _ in range(3))
        repeats = 3 if n <= 4096 else 1
        dense = cpu_time(lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v), repeats)
        rows.append({"device": "cpu", "n": n, "d": d, "heads": heads, "path": "sdpa dense", "density": 1.0,
                     "bits": 32, "seconds": dense, "ratio_vs_dense": 1.0})  # fmt: skip
        for density in (0.5, 0.25):
            lists = BlockLists.from_mask(random_block_mask(heads, n // block, density), block)
            for bits in (16, 8):

                def run(q=q, k=k, v=v, lists=lists, bits=bits) -> torch.Tensor:
                    return block_sparse_attention(q, k, v, lists, qk_bits=bits)

                seconds = cpu_time(run, repeats)
                rows.append({"device": "cpu", "n": n, "d": d, "heads": heads, "path": "torch block-sparse",
                             "density": density, "bits": 32 if bits == 16 else bits, "seconds": seconds,
                             "ratio_vs_dense": dense / seconds})  # fmt: skip
    return rows


def gpu_seconds(fn: Any) -> float:
    import triton.testing

    return triton.testing.do_bench(fn, warmup=10, rep=100) / 1e3


def measured(row: dict[str, Any], flops: int, fn: Any, cudnn: float | None = None) -> dict[str, Any] | None:
    """`row` with the time of `fn`, or None (the error printed) when the path fails: one broken path must
    not cost the others their device time."""
    try:
        seconds = gpu_seconds(fn)
    except Exception as failure:
        print(f"error: {row}: {failure!r}"[:2000])
        return None
    row = {**row, "seconds": seconds, "tflops": flops / seconds / 1e12}
    return row if cudnn is None else {**row, "vs_cudnn": cudnn / seconds}


def keep(rows: list[dict[str, Any]], row: dict[str, Any] | None) -> None:
    """Add a measured row, printed at once: a run cut off by its time limit keeps what it measured."""
    if row is not None:
        rows.append(row)
        print("row:", json.dumps(row), flush=True)


def gpu_rows(quick: bool) -> list[dict[str, Any]]:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from seed_attn.kernels import triton_block_sparse_attention
    from seed_attn.ops import _compiled_flex, flex_block_mask

    rows: list[dict[str, Any]] = []
    name = torch.cuda.get_device_name()
    # the acceptance shape (N = 32K, D = 128) first: a part cut off by its time limit still has it
    shapes = [(16384, 128)] if quick else [(32768, 128), (16384, 128), (32768, 64), (16384, 64)]
    for n, d in shapes:
        heads = 24 if d == 128 else 48
        q, k, v = (torch.randn(1, heads, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        flops = 4 * heads * n * n * d
        dense = functools.partial(F.scaled_dot_product_attention, q, k, v)
        sdpa = "cuDNN SDPA"
        try:
            with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
                cudnn, expected = gpu_seconds(dense), dense().float()
        except RuntimeError as failure:  # no cuDNN attention in this build: the default backend instead
            print(f"error: cuDNN SDPA N={n} D={d}: {failure!r}"[:2000])
            sdpa = "SDPA (default backend)"
            cudnn, expected = gpu_seconds(dense), dense().float()
        keep(rows, {"device": name, "n": n, "d": d, "heads": heads, "path": sdpa, "density": 1.0,
                    "bits": 16, "seconds": cudnn, "tflops": flops / cudnn / 1e12})  # fmt: skip
        dense_lists = BlockLists.dense(n, n, 128, "cuda")
        trusted = []
        for bits in (16, 8):  # correctness first: the dense kernel against cuDNN; a wrong path is not timed
            try:
                got = triton_block_sparse_attention(q, k, v, dense_lists, qk_bits=bits).float()
                relative = float((got - expected).norm() / expected.norm())
            except Exception as failure:
                print(f"error: triton {bits}-bit N={n} D={d}: {failure!r}"[:2000])
                continue
            print(f"check: triton dense {bits}-bit vs cuDNN, N={n} D={d}: relative error {relative:.2e}")
            if relative <= (0.01 if bits == 16 else 0.05):
                trusted.append(bits)
            else:
                print(f"error: the Triton kernel is wrong at N={n} D={d} bits={bits}: error {relative:.3f}")
        del expected
        for density in (1.0, 0.5, 0.25):
            for block in (64, 128):
                mask = random_block_mask(heads, n // block, density).cuda()
                lists = BlockLists.from_mask(mask, block)
                base = {"device": name, "n": n, "d": d, "heads": heads, "density": density}
                for bits in trusted:
                    run = functools.partial(
                        triton_block_sparse_attention, q, k, v, lists, qk_bits=bits, pv_bits=16
                    )
                    keep(
                        rows, measured({**base, "path": f"triton b{block}", "bits": bits}, flops, run, cudnn)
                    )
                if block == 128:
                    try:
                        bm = flex_block_mask(mask, block, n, n)
                    except Exception as failure:
                        print(f"error: FlexAttention block mask N={n}: {failure!r}"[:2000])
                        continue
                    run = functools.partial(_compiled_flex(), q, k, v, block_mask=bm)
                    keep(
                        rows, measured({**base, "path": "FlexAttention b128", "bits": 16}, flops, run, cudnn)
                    )
    return rows


def tune_rows() -> list[dict[str, Any]]:
    """The acceptance shape (N = 32K, D = 128, density 0.25) only: the Triton kernel under several launch
    options, FlexAttention on the same mask, and PARO's per-head order gathered or fused into the kernel
    (`keep_paro_rows`), for a short device call."""
    from seed_attn.kernels import triton_block_sparse_attention
    from seed_attn.ops import _compiled_flex, flex_block_mask

    name, n, d, heads, density = torch.cuda.get_device_name(), 32768, 128, 24, 0.25
    q, k, v = (torch.randn(1, heads, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    flops = 4 * heads * n * n * d
    rows: list[dict[str, Any]] = []
    base = {"device": name, "n": n, "d": d, "heads": heads, "density": density}
    for block in (64, 128):
        mask = random_block_mask(heads, n // block, density).cuda()
        lists = BlockLists.from_mask(mask, block)
        if block == 128:
            run = functools.partial(_compiled_flex(), q, k, v, block_mask=flex_block_mask(mask, block, n, n))
            keep(rows, measured({**base, "path": "FlexAttention b128", "bits": 16}, flops, run))
        for bits in (16, 8):
            for warps, stages in ((4, 2), (4, 3), (8, 2), (8, 3), (4, 4)):
                run = functools.partial(
                    triton_block_sparse_attention, q, k, v, lists, qk_bits=bits, num_warps=warps,
                    num_stages=stages,
                )  # fmt: skip
                path = f"triton b{block} w{warps} s{stages}"
                keep(rows, measured({**base, "path": path, "bits": bits}, flops, run))
    keep_paro_rows(rows, q, k, v, lists, base, flops)
    return rows


def keep_paro_rows(
    rows: list[dict[str, Any]], q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lists: BlockLists,
    base: dict[str, Any], flops: int,
) -> None:  # fmt: skip
    """PAROAttention's reorder at the same mask: gathering Q, K, V into each head's order and the output
    back (four passes over memory) against the kernel reading and writing through the order."""
    from seed_attn.kernels import triton_block_sparse_attention
    from seed_attn.ops import reorder

    gen = torch.Generator().manual_seed(0)
    perm = torch.stack([torch.randperm(q.shape[2], generator=gen) for _ in range(q.shape[1])]).to(q.device)
    inverse = torch.argsort(perm)
    for bits in (16, 8):

        def gathered(bits: int = bits) -> torch.Tensor:
            qp, kp, vp = (reorder(x, perm) for x in (q, k, v))
            return reorder(triton_block_sparse_attention(qp, kp, vp, lists, qk_bits=bits), inverse)

        fused = functools.partial(triton_block_sparse_attention, q, k, v, lists, qk_bits=bits, perm=perm)
        try:
            expected = gathered().float()
            relative = float((fused().float() - expected).norm() / expected.norm())
        except Exception as failure:
            print(f"error: PARO reorder, {bits}-bit: {failure!r}"[:2000])
            continue
        print(f"check: PARO order fused vs gathered, {bits}-bit: relative difference {relative:.2e}")
        keep(rows, measured({**base, "path": "paro gathers", "bits": bits}, flops, gathered))
        if relative <= 0.01:
            keep(rows, measured({**base, "path": "paro order fused", "bits": bits}, flops, fused))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one shape per device")
    parser.add_argument("--json", type=Path, help="[benchmarks/results/attention-{cpu,gpu,gpu-tune}.json]")
    parser.add_argument("--gpu-only", action="store_true")
    parser.add_argument("--tune", action="store_true", help="GPU: launch options at the acceptance shape")
    args = parser.parse_args()
    results = Path("benchmarks/results")
    if args.tune:
        args.json = args.json or results / "attention-gpu-tune.json"
        rows = tune_rows()
        args.json.write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=2) + "\n")
        return
    args.json = args.json or results / ("attention-gpu.json" if args.gpu_only else "attention-cpu.json")
    rows = [] if args.gpu_only else cpu_rows(args.quick)
    if torch.cuda.is_available():
        rows += gpu_rows(args.quick)
    print(f"{'device':<22} {'N':>6} {'D':>4} {'path':<20} {'dens':>5} {'bits':>4} {'ms':>10} {'ratio/TF':>9}")
    for r in rows:
        extra = r.get("tflops", r.get("ratio_vs_dense"))
        print(f"{r['device'][:22]:<22} {r['n']:>6} {r['d']:>4} {r['path']:<20} {r['density']:>5} "
              f"{r['bits']:>4} {r['seconds'] * 1e3:>10.2f} {extra:>9.2f}")  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    record = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__, "rows": rows}
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
