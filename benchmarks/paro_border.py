"""Where PARO's error lands on seedream-mini at 256x256: the error of the final latents against dense
attention by position, and what exact attention for the border tokens' queries alone would recover.

For each configuration, the same prompts and seeds as dense: the relative MSE of the latents that the VAE
decodes (full size), the share of that error in the outer ring of latent tokens (3 tokens deep, 34% of the
1,024), and the PSNR of the images. The `exact border W` rows are a diagnostic, not an accelerator: the
PARO backend runs as usual, then the outputs of the queries in the outer W token rows / columns are
replaced by exact attention (sdpa on the same permuted q, k, v), which tells whether the border tokens
carry the loss.

    uv run python benchmarks/paro_border.py [--prompts 6] [--json benchmarks/results/paro-border.json]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from seed_attn import backends
from seed_attn.paro import active_layer
from seed_core.images import from_pil
from seed_core.pipeline import load
from seed_core.requests import GenerateRequest
from seed_mini import metrics

CONFIGS: list[tuple[str, list[str], int]] = [  # name, accelerators, exact border width (tokens)
    ("paro d0.3 16-bit", ["paro:density=0.3,bits=16"], 0),
    ("paro d0.3 16-bit, exact border 1", ["paro:density=0.3,bits=16"], 1),
    ("paro d0.3 16-bit, exact border 2", ["paro:density=0.3,bits=16"], 2),
    ("paro d0.3 16-bit, exact border 3", ["paro:density=0.3,bits=16"], 3),
    ("paro d0.5 16-bit", ["paro:density=0.5,bits=16"], 0),
    ("paro d0.3 int8", ["paro:density=0.3,bits=8"], 0),
]


def ring(grid: tuple[int, int], width: int) -> torch.Tensor:
    """(rows * cols,) bool: the tokens within `width` of the grid's edge, row-major."""
    h, w = grid
    r, c = torch.arange(h)[:, None], torch.arange(w)[None, :]
    depth = torch.minimum(torch.minimum(r, h - 1 - r), torch.minimum(c, w - 1 - c))
    return (depth < width).flatten()


@contextmanager
def exact_border(width: int) -> Iterator[None]:
    """PARO's block-sparse outputs, with the border tokens' query rows recomputed exactly."""
    original = backends.ops.sparse_attention
    if width == 0:
        yield
        return

    def patched(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lists: Any, **kw: Any) -> torch.Tensor:
        out = original(q, k, v, lists, **kw)
        active = active_layer()
        runtime, layer = active  # type: ignore[misc]
        prepared = next(iter(runtime.prepared.values()))  # type: ignore[union-attr]
        plan = prepared.plan
        border = torch.cat((torch.zeros(plan.prefix, dtype=torch.bool), ring(plan.grid, width)))
        exact = torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=kw.get("mask"), scale=kw.get("scale")
        )
        chosen = border.to(q.device)[prepared.perms[layer]][None, :, :, None]  # (1, H, L, 1), permuted
        return torch.where(chosen, exact, out)

    backends.ops.sparse_attention = patched
    try:
        yield
    finally:
        backends.ops.sparse_attention = original


def run(accelerators: list[str], prompts: list[str], size: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(latents (N, C, h, w), images (N, 3, H, W), the DiT's patch size) of the prompts, seed i for
    prompt i."""
    pipeline = load("seedream-mini", accelerators=accelerators)
    latents: list[torch.Tensor] = []
    decode = pipeline.vae.decode

    def keep(z: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        latents.append(z.detach().clone())
        return decode(z, *args, **kwargs)

    pipeline.vae.decode = keep  # the draft decodes too: only the full-size latents are kept below
    images = [
        from_pil(pipeline.run(GenerateRequest(p, seed=i, width=size, height=size)).images[0])
        for i, p in enumerate(prompts)
    ]
    side = max(z.shape[-1] for z in latents)
    latent = torch.cat([z for z in latents if z.shape[-1] == side])
    return latent, torch.stack(images), int(pipeline.dit.cfg.patch_size)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=6, help="first N prompts of the suite")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/paro-border.json"))
    args = parser.parse_args()
    prompts = [case.prompt for case in metrics.prompt_suite(24)[: args.prompts]]
    start = time.perf_counter()
    dense_z, dense_x, patch = run([], prompts, args.size)
    # the outer 3 tokens: with patch 2, the outer 6 latent rows / columns
    tokens = (dense_z.shape[-2] // patch, dense_z.shape[-1] // patch)
    edge = ring(tokens, 3).view(tokens).repeat_interleave(patch, 0).repeat_interleave(patch, 1)
    rows = []
    print(f"{'configuration':36} {'latent rel. MSE':>16} {'in border ring':>15} {'image PSNR':>11}")
    for name, accelerators, width in CONFIGS:
        with exact_border(width):
            z, x, _ = run(accelerators, prompts, args.size)
        error = (z - dense_z).pow(2).mean((0, 1))  # (h, w)
        rel = float(error.mean() / dense_z.pow(2).mean())
        share = float(error[edge].sum() / error.sum())
        psnr = 10 * math.log10(1 / float((x - dense_x).pow(2).mean()))
        rows.append({"name": name, "accelerators": accelerators, "exact_border": width,
                     "latent_rel_mse": rel, "border_error_share": share, "psnr": psnr})  # fmt: skip
        print(f"{name:36} {rel:16.4f} {share:14.0%} {psnr:10.1f}", flush=True)
    result = {
        "model": "seedream-mini",
        "size": args.size,
        "prompts": prompts,
        "border_ring_area": float(edge.float().mean()),
        "rows": rows,
        "seconds": time.perf_counter() - start,
        "threads": torch.get_num_threads(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"border ring area {result['border_ring_area']:.0%}; wrote {args.json}")


if __name__ == "__main__":
    main()
