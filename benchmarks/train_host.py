"""Host work of seedream-mini's training data per step, by where it runs: what a worker process does
(draw the scenes; pack them into tensors, tokenize the prompts, index the words) and what is left to the
training loop (render the packed batch on the device: here the CPU, one thread, median of `--repeats`).

The loop's rendering is a fixed number of operator calls whatever the batch (one pass per shape kind),
so on a GPU its host cost does not grow with the batch; the per-object and per-word Python (the pack
column) ran in the loop before session 12 and runs in the workers now. `hand-over` is a packed batch's
trip from a worker process to the loop (pickled there, received here, waited for). `workers for N
steps/s` is the number of worker processes that draw and pack N batches a second at that batch size.

    uv run python benchmarks/train_host.py [--batch 512 2048 4096] [--json FILE]
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from attention import cpu_time  # the benchmarks' timer: warm-up, then the median

from seed_mini import train


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    return 1e3 * cpu_time(fn, repeats)


def operator_calls(fn: Callable[[], Any]) -> int:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))


def text_to_image_steps(n: int) -> list[int]:
    """The first `n` steps whose batch is text-to-image at 64 px."""
    return [s for s in range(200) if train.dit_scenes(0, s, 2, size=64).task == "generate"][:n]


@functools.cache
def cached_batch(batch: int) -> train.PackedBatch:
    """A worker's packed batch, drawn once: what the hand-over to the training loop is timed with."""
    return train.draw_packed(0, text_to_image_steps(1)[0], batch, ((64, 1.0),))


def hand_over_ms(pool: ProcessPoolExecutor, batch: int, repeats: int) -> float:
    """A packed batch from a worker process to this one (pickled there, received here), as the loop waits
    for it: an upper bound on what the loop pays, since the worker's share runs in parallel."""
    return median_ms(lambda: pool.submit(cached_batch, batch).result(), repeats)


def measure(batch: int, repeats: int, pool: ProcessPoolExecutor) -> dict[str, float]:
    steps = text_to_image_steps(repeats)
    scenes = [train.dit_scenes(0, s, batch, size=64) for s in steps]
    packed = [train.pack_scenes(s) for s in scenes]
    cycle = iter(range(10**9))

    def pick(items: list[Any]) -> Any:
        return items[next(cycle) % len(items)]

    draw = median_ms(lambda: train.dit_scenes(0, pick(steps), batch, size=64), repeats)
    pack = median_ms(lambda: train.pack_scenes(pick(scenes)), repeats)
    render = median_ms(lambda: train.render_scenes(pick(packed), "cpu"), repeats)
    return {
        "batch": batch,
        "objects": sum(len(s.objects) for s in scenes[0].targets),
        "draw_ms": draw,
        "pack_ms": pack,
        "render_ms": render,
        "render_operator_calls": operator_calls(lambda: train.render_scenes(packed[0], "cpu")),
        "hand_over_ms": hand_over_ms(pool, batch, repeats),
        "worker_ms": draw + pack,
    }


def step_costs(repeats: int) -> dict[str, float]:
    """What a training step costs whatever its batch: a whole step of the mini preset at batch 1 (forward,
    backward, clipping, fused AdamW, EMA) with its operator calls, and AdamW over the DiT and text encoder
    with foreach against fused kernels."""
    from seed_dit.training import EMA
    from seed_vae import Autoencoder, AutoencoderConfig

    torch.manual_seed(0)
    vae = Autoencoder(AutoencoderConfig.preset("mini-f4"))
    dit, text = train.build_dit("mini", vae.cfg.latent_channels)
    params = [*dit.parameters(), *text.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
    ema = EMA(dit)
    one = (train.draw_packed(0, s, 1, ((64, 1.0),)) for s in text_to_image_steps(50))
    data = train.render_scenes(next(b for b in one if b.prompts[0]))  # a captioned image: the word loss runs
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        loss, named = train.dit_loss(dit, text, vae, data, generator, words=True, pooled_drop=0.5)
        opt.zero_grad()
        (loss + 0.1 * named).backward()  # type: ignore[operator]  # named: the prompt has words
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update(dit)

    row = {"step_ms": median_ms(step, repeats), "step_operator_calls": operator_calls(step)}
    row["parameters"] = sum(p.numel() for p in params)
    for fused in (False, True):
        adamw = torch.optim.AdamW(params, lr=1e-4, foreach=not fused, fused=fused)
        row[f"adamw_{'fused' if fused else 'foreach'}_ms"] = median_ms(adamw.step, repeats)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, nargs="+", default=[512, 2048, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rate", type=float, default=10.0, help="steps/s the workers must feed")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/train_host.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        rows = [measure(b, args.repeats, pool) for b in args.batch]
    header = ["batch", "objects", "draw ms", "pack ms (now in the workers)", "render ms (CPU)"]
    header += ["render operator calls", "hand-over ms", f"workers for {args.rate:g} steps/s"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        r["workers_needed"] = r["worker_ms"] * args.rate / 1e3
        times = [f"{r[k]:.1f}" for k in ("draw_ms", "pack_ms", "render_ms")]
        cells = [r["batch"], r["objects"], *times, r["render_operator_calls"], f"{r['hand_over_ms']:.1f}"]
        cells += [f"{r['workers_needed']:.1f}"]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    costs = step_costs(args.repeats)
    print(
        f"\na step at batch 1: {costs['step_ms']:.1f} ms, {costs['step_operator_calls']} operator calls; "
        f"AdamW over {costs['parameters'] / 1e6:.1f}M parameters: "
        f"foreach {costs['adamw_foreach_ms']:.1f} ms, fused {costs['adamw_fused_ms']:.1f} ms"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rate": args.rate, "rows": rows, "step": costs}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
