"""A training step of seedream-mini's DiT eager against `torch.compile` (inductor), in one process on the
same weights and batches, steps alternating so that both see the same machine; medians after warm-up.

Why: on the CPU a step at batch 256 spends about a third of its time in elementwise operators (the
adaptive-norm modulation, GELU, SiLU, sums, copies), the part a compiler fuses. The compile time of the
first step is reported apart.

    uv run python benchmarks/train_compile.py [--model training/seedream-mini/live] [--batch 256]
        [--pairs 4] [--json benchmarks/results/train_compile.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from seed_mini import train


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=Path("training/seedream-mini/live"))
    parser.add_argument("--vae", type=Path, default=Path("training/seedream-mini"))
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=4, help="timed (eager, compiled) step pairs")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/train_compile.json"))
    args = parser.parse_args()
    torch.set_flush_denormal(True)  # as the training loop
    vae = train.load_vae(args.vae)
    dit, text = train.build_dit("mini", vae.cfg.latent_channels)
    train.init_from(args.model, dit, text, "cpu")
    text.requires_grad_(False)
    params = list(dit.parameters())
    opt = torch.optim.AdamW(params, lr=1e-6, fused=True)
    compiled = torch.compile(dit)
    # one text-to-image batch at 64 px (the recipe's common case), the same for every step
    scenes = next(
        s for step in range(100) if (s := train.dit_scenes(0, step, args.batch, size=64)).task == "generate"
    )
    data = train.render_scenes(scenes)

    def step(model: torch.nn.Module, seed: int) -> tuple[float, float]:
        start = time.perf_counter()
        gen = torch.Generator().manual_seed(seed)
        loss, _ = train.dit_loss(model, text, vae, data, gen, "fp32", pooled_drop=0.5)  # type: ignore[arg-type]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return time.perf_counter() - start, float(loss)

    eager_first, loss_eager = step(dit, 0)
    compile_first, loss_compiled = step(compiled, 0)  # the compile, then the step
    eager, fast = [], []
    for i in range(1 + args.pairs):  # the first pair is warm-up
        e, c = step(dit, i + 1)[0], step(compiled, i + 1)[0]
        if i:
            eager.append(e)
            fast.append(c)
    rows = {
        "eager s/step": statistics.median(eager),
        "compiled s/step": statistics.median(fast),
        "speed-up": statistics.median(eager) / statistics.median(fast),
        "first compiled step s (compile included)": compile_first,
        "first eager step s": eager_first,
        "loss eager / compiled, same noise (weights one update apart)": [loss_eager, loss_compiled],
    }
    print(f"batch {args.batch}, 64 px, text-to-image, {torch.get_num_threads()} threads, {args.pairs} pairs")
    for key, value in rows.items():
        print(f"{key:<62} {value}")
    record = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "eager": eager,
        "compiled": fast,
        **rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
