"""Weight quantization (seed-quant): bytes on disk, output PSNR against the unquantized model with the
same seeds, peak resident memory of `seed generate`, per-layer sensitivity, and on a GPU the Linear
throughput at DiT shapes and one full DiT step of a large Seedream preset with random weights.

    uv run python benchmarks/quant.py [--kinds int8 w8a8 int4 int4:group=128] [--prompts 8]
    uv run python benchmarks/quant.py --sensitivity          # int4 on one DiT layer at a time
    python benchmarks/quant.py --gpu-only                      # on a CUDA machine (PYTHONPATH=packages/*/src)

Prints tables and writes benchmarks/results/quant[-gpu].json (or --json PATH).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seed_core.pipeline import load
from seed_core.requests import GenerateRequest

PROMPTS = (
    "a red circle left of a blue square",
    "a green triangle",
    "two yellow stars on a black background",
    "a small purple hexagon above a large orange circle",
    "a blue square",
    "three red circles",
    "a white star right of a green square on a gray background",
    "an orange triangle below a blue hexagon",
)
COMPONENTS = ("dit", "vae", "text_encoder")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def images(pipeline: Any, prompts: list[str]) -> list[np.ndarray]:
    return [np.asarray(pipeline.run(GenerateRequest(p, seed=i)).images[0]) for i, p in enumerate(prompts)]


def component_bytes(directory: Path) -> int:
    return sum((directory / f"{c}.safetensors").stat().st_size for c in COMPONENTS)


def peak_rss(args: list[str]) -> tuple[float, float]:
    """(peak resident MiB, seconds) of a child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(
            f"{' '.join(args)} failed: {proc.stderr.read().decode()[-400:] if proc.stderr else ''}"
        )
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def cpu_run(args: argparse.Namespace) -> dict[str, Any]:
    from seed_core.weights import save_safetensors
    from seed_quant.quantize import save_quantized

    prompts = list(PROMPTS[: args.prompts])
    base = load(args.model)
    reference = images(base, prompts)
    results: dict[str, Any] = {"model": args.model, "prompts": len(prompts), "kinds": {}}
    with tempfile.TemporaryDirectory() as tmp:
        bf16 = Path(tmp) / "bf16"
        bf16.mkdir()
        for comp in COMPONENTS:
            save_safetensors(
                base.components()[comp].state_dict(), bf16 / f"{comp}.safetensors", dtype="bfloat16"
            )
        results["bf16_bytes"] = component_bytes(bf16)
        gen = [sys.executable, "-m", "seed_cli", "generate", PROMPTS[0], "-o", f"{tmp}/x.png", "--force"]
        rss, secs = peak_rss([*gen, "-m", args.model])
        results["bf16_rss_mib"], results["bf16_seconds"] = rss, secs
        print(
            f"{'kind':<18} {'bytes vs bf16':>13} {'PSNR dB':>8} {'min dB':>7} {'RSS accel':>10} "
            f"{'RSS dir':>8}"
        )
        print(f"{'(unquantized)':<18} {1.0:>13.3f} {'-':>8} {'-':>7} {rss:>9.0f}M {'-':>8}")
        for item in args.kinds:
            kind, _, opts = item.partition(":")
            options = dict(kv.split("=") for kv in opts.split(",") if kv)
            pipe = load(args.model, accelerators=[item])
            scores = [psnr(a, b) for a, b in zip(images(pipe, prompts), reference, strict=True)]
            out = Path(tmp) / item.replace(":", "_").replace("=", "").replace(",", "_")
            typed = {k: (float(v) if "." in v else int(v) if v.isdigit() else v) for k, v in options.items()}
            save_quantized(pipe, out, kind, {"parts": "all", **typed})
            size = component_bytes(out)
            rss_accel, _ = peak_rss([*gen, "-m", args.model, "--accel", item])
            rss_dir, secs_dir = peak_rss([*gen, "-m", str(out)])
            finite = [s for s in scores if math.isfinite(s)]
            row = {
                "bytes": size,
                "bytes_ratio": size / results["bf16_bytes"],
                "psnr_mean": sum(finite) / len(finite) if finite else float("inf"),
                "psnr_min": min(scores),
                "psnr": scores,
                "rss_accel_mib": rss_accel,
                "rss_dir_mib": rss_dir,
                "seconds_dir": secs_dir,
            }
            results["kinds"][item] = row
            print(
                f"{item:<18} {row['bytes_ratio']:>13.3f} {row['psnr_mean']:>8.1f} {row['psnr_min']:>7.1f} "
                f"{rss_accel:>9.0f}M {rss_dir:>7.0f}M"
            )
    return results


def sensitivity(args: argparse.Namespace) -> dict[str, Any]:
    """int4 (group 64) on one DiT layer at a time: PSNR of the output against the unquantized model."""
    from torch import nn

    from seed_quant.quantize import quantize_module

    prompts = list(PROMPTS[: args.prompts])
    base = load(args.model)
    reference = images(base, prompts)
    names = [n for n, m in base.dit.named_modules() if isinstance(m, nn.Linear)]
    rows = {}
    print(f"{'DiT layer (int4 alone)':<28} {'weights':>8} {'PSNR dB':>8}")
    for name in names:
        pipe = load(args.model)
        keep = [n for n in names if n != name]
        with torch.no_grad():
            quantize_module(pipe.dit, "int4", keep=keep)
        scores = [psnr(a, b) for a, b in zip(images(pipe, prompts), reference, strict=True)]
        weights = base.dit.get_submodule(name).weight.numel()
        rows[name] = {"weights": weights, "psnr": sum(scores) / len(scores)}
        print(f"{name:<28} {weights:>8} {rows[name]['psnr']:>8.1f}")
    return {"model": args.model, "prompts": len(prompts), "layers": rows}


def gpu_run(args: argparse.Namespace) -> dict[str, Any]:
    """Linear throughput at DiT shapes against bf16, and one DiT step of a large preset (`--device cpu
    --width 256 --tokens 64 --dit-preset tiny --dit-tokens 16` smoke-tests this path on a CPU)."""
    from torch import nn

    from seed_quant.quantize import fp8_unsupported, quantize_module

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
        "torch": torch.__version__,
        "linear": {},
        "dit_step": {},
    }
    kinds = ["w8a8", "int8", "int4"] + ([] if fp8_unsupported(dev) else ["fp8"])
    # the same kinds another way: w8a8's GEMM with its one fixed launch option (session 11's) and through
    # torch._int_mm; fp8 with cuBLAS's fast accumulation
    variants = ["w8a8-fixed", "w8a8-torch"] + ([] if fp8_unsupported(dev) else ["fp8-fast"])

    def timed(fn: Any, repeats: int = 20) -> float:
        for _ in range(3):
            fn()
        if not cuda:
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
            return (time.perf_counter() - start) / repeats
        torch.cuda.synchronize()
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        for _ in range(repeats):
            fn()
        end.record()
        torch.cuda.synchronize()
        return begin.elapsed_time(end) / repeats / 1e3

    width = args.width
    print(f"{'tokens':>7} {'in':>6} {'out':>6} {'kind':<10} {'TFLOP/s':>8} {'x bf16':>7}")
    for tokens in args.tokens:
        for out in (width, 4 * width):
            x = torch.randn(tokens, width, device=dev, dtype=torch.bfloat16)
            layer = nn.Linear(width, out, device=dev, dtype=torch.bfloat16)
            flops = 2 * tokens * width * out
            with torch.no_grad():
                row = {"bf16": flops / timed(lambda layer=layer, x=x: layer(x)) / 1e12}
                for kind in [*kinds, *variants]:
                    holder = nn.Sequential(nn.Linear(width, out, device=dev, dtype=torch.bfloat16))
                    holder[0].load_state_dict(layer.state_dict())
                    try:
                        base, _, variant = kind.partition("-")
                        quantize_module(holder, base)
                        if variant == "fast":
                            holder[0].fast_accum = True
                        elif variant:  # torch: torch._int_mm and eager quantization; fixed: no autotuning
                            holder[0].kernel = variant
                        row[kind] = flops / timed(lambda holder=holder, x=x: holder(x)) / 1e12
                    except Exception as failure:  # one broken kind must not cost the others the device run
                        print(f"error: {kind} at {tokens}x{width}->{out}: {failure!r}"[:2000])
            results["linear"][f"{tokens}x{width}->{out}"] = row
            for kind, tf in row.items():
                print(f"{tokens:>7} {width:>6} {out:>6} {kind:<10} {tf:>8.1f} {tf / row['bf16']:>7.2f}")

    from seed_dit.config import MMDiTConfig
    from seed_dit.model import Conditioning, MMDiT

    preset, tokens = args.dit_preset, args.dit_tokens
    cfg = MMDiTConfig.preset(preset)
    side = math.isqrt(tokens) * cfg.patch_size  # latent side for `tokens` image tokens
    torch.manual_seed(0)
    x = torch.randn(1, cfg.in_channels, side, side, device=dev, dtype=torch.bfloat16)
    t = torch.full((1,), 0.5, device=dev)
    cond = Conditioning(
        text=torch.randn(1, 256, cfg.text_dim, device=dev, dtype=torch.bfloat16),
        text_mask=torch.ones(1, 256, dtype=torch.bool, device=dev),
        pooled=torch.randn(1, cfg.pooled_dim, device=dev, dtype=torch.bfloat16),
        task=torch.zeros(1, dtype=torch.long, device=dev),
    )
    step: dict[str, float] = {}
    for kind in ["bf16", *kinds]:
        with torch.device(dev):
            model = MMDiT(cfg).to(torch.bfloat16).eval()
        try:
            if kind != "bf16":
                with torch.no_grad():
                    quantize_module(model, kind, keep=("img_in", "final"))
            with torch.no_grad():
                step[kind] = timed(lambda model=model: model(x, t, cond), repeats=5)
        except Exception as failure:
            print(f"error: DiT step {kind}: {failure!r}"[:2000])
            del model
            continue
        print(
            f"DiT {preset}, {tokens} image tokens + 256 text, {kind}: {step[kind] * 1e3:.1f} ms "
            f"({step['bf16'] / step[kind]:.2f}x bf16)"
        )
        del model
        torch.cuda.empty_cache()
    results["dit_step"] = {"preset": preset, "image_tokens": tokens, "seconds": step}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="seedream-mini")
    parser.add_argument(
        "--kinds", nargs="+", default=["int8", "w8a8:smooth=0", "w8a8", "int4", "int4:group=128"]
    )
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--sensitivity", action="store_true")
    parser.add_argument("--gpu-only", action="store_true")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--width", type=int, default=3072)
    parser.add_argument("--tokens", type=int, nargs="+", default=[4096, 8192, 16384])
    parser.add_argument("--dit-preset", default="8b")
    parser.add_argument("--dit-tokens", type=int, default=4096)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.gpu_only:
        results, name = gpu_run(args), "quant-gpu.json"
    elif args.sensitivity:
        results, name = sensitivity(args), "quant-sensitivity.json"
    else:
        results, name = cpu_run(args), "quant.json"
    path = args.json or Path(__file__).parent / "results" / name
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
