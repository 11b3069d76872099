"""Seed accelerators on diffusers pipelines (seed-diffusers).

CPU (default): tiny random SD3 / Flux / Wan pipelines built offline; for each accelerator, the output of
one fixed request against diffusers' own output with the same seed (max |diff| and PSNR in [0, 1] pixels)
and the time of the call relative to the unaccelerated one (2 CPU cores: ratios only).

GPU (`--gpu`): a real-size transformer with random weights (Flux-dev at 1024x1024, or Wan 2.1 1.3B at
480x832 with 81 frames), bf16, one denoising step (one transformer call): native diffusers attention vs
`paro` at density 0.3 + INT8 (a plan calibrated on that call) vs `w8a8` weights vs both.

    uv run python benchmarks/diffusers_interop.py
    python benchmarks/diffusers_interop.py --gpu [--model flux|wan]   # PYTHONPATH=packages/*/src on a GPU

Prints a table and writes benchmarks/results/diffusers[-gpu-MODEL].json (or --json PATH).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ACCELERATORS = (
    "paro:density=1,bits=16",
    "flex",
    "int8-attn",
    "int8-attn:pv_bits=8",
    "paro:density=0.5,bits=8",
    "paro:density=0.3,bits=8",
    "int8",
    "w8a8",
    "int4",
)


def cpu_run(args: argparse.Namespace) -> dict[str, Any]:
    from diffusers import DiffusionPipeline

    from seed_attn.calibrate import calibrate
    from seed_core.pipeline import load
    from seed_diffusers.testing import FRAMES, diffusers_output, psnr
    from seed_diffusers.tiny import build_tiny

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as work:
        for family in args.families:
            path = build_tiny(family, Path(work) / family, layers=args.layers)
            reference_pipe = DiffusionPipeline.from_pretrained(str(path), local_files_only=True)
            reference_pipe.set_progress_bar_config(disable=True)

            def timed(pipe: Any, family: str = family) -> tuple[np.ndarray, float]:
                diffusers_output(pipe, family, size=args.size)  # warm-up
                start = time.perf_counter()
                out = diffusers_output(pipe, family, size=args.size)
                return out, time.perf_counter() - start

            reference, base = timed(reference_pipe)
            calibrate(
                f"diffusers:{path}",
                size=(args.size, args.size),
                prompts=["a red circle"],
                steps=2,
                frames=FRAMES,
            )
            for accel in ("none", *ACCELERATORS):
                pipeline = load(f"diffusers:{path}", accelerators=[] if accel == "none" else [accel])
                out, seconds = timed(pipeline.pipe)
                rows.append(
                    {
                        "family": family,
                        "accelerator": accel,
                        "max_abs_diff": float(np.abs(out - reference).max()),
                        "psnr_db": psnr(out, reference),
                        "time_ratio": seconds / base,
                    }
                )
    print(f"{'family':<6} {'accelerator':<26} {'max |diff|':>11} {'PSNR dB':>8} {'time x':>7}")
    for r in rows:
        print(
            f"{r['family']:<6} {r['accelerator']:<26} {r['max_abs_diff']:>11.2e} {r['psnr_db']:>8.1f} "
            f"{r['time_ratio']:>7.2f}"
        )
    return {"device": "cpu", "size": args.size, "layers": args.layers, "rows": rows}


# --- GPU: a real-size transformer, one denoising step ------------------------------------------------------

FLUX_DEV = dict(
    patch_size=1,
    in_channels=64,
    num_layers=19,
    num_single_layers=38,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=4096,
    pooled_projection_dim=768,
    guidance_embeds=True,
    axes_dims_rope=[16, 56, 56],
)
WAN_1_3B = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=12,
    attention_head_dim=128,
    in_channels=16,
    out_channels=16,
    text_dim=4096,
    freq_dim=256,
    ffn_dim=8960,
    num_layers=30,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    rope_max_seq_len=1024,
)


def _random_transformer(model: str, small: bool, device: str, dtype: torch.dtype) -> Any:
    from diffusers import FluxTransformer2DModel, WanTransformer3DModel

    cls, config = (
        (FluxTransformer2DModel, dict(FLUX_DEV))
        if model == "flux"
        else (WanTransformer3DModel, dict(WAN_1_3B))
    )
    if small:  # the same code path at a size a CPU runs (checks the script, not a result)
        if model == "flux":
            config.update(
                num_layers=1,
                num_single_layers=1,
                num_attention_heads=2,
                attention_head_dim=64,
                axes_dims_rope=[8, 28, 28],
                joint_attention_dim=64,
                pooled_projection_dim=32,
            )
        else:
            config.update(num_layers=2, num_attention_heads=2, text_dim=64, ffn_dim=256)
    with torch.device("meta"):
        net = cls(**config)
    net = net.to_empty(device=device)
    generator = torch.Generator(device).manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():  # random weights: timing only
            p.normal_(0.0, 0.02, generator=generator)
    if model == "wan":  # the rotary tables are buffers computed at construction: rebuild them off meta
        from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

        net.rope = WanRotaryPosEmbed(
            config["attention_head_dim"], config["patch_size"], config["rope_max_seq_len"]
        ).to(device)
    return net.to(dtype).eval()


def _inputs(model: str, small: bool, device: str, dtype: torch.dtype, frames: int = 81) -> dict[str, Any]:
    from seed_diffusers.families import flux_image_ids

    g = torch.Generator(device).manual_seed(1)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, device=device).to(dtype)

    if model == "flux":
        side, text, width = (16, 64, 64) if small else (64, 512, 4096)  # 1024 px: 64x64 packed tokens
        ids = flux_image_ids(side, side, device)
        return dict(
            hidden_states=randn(1, side * side, 64),
            encoder_hidden_states=randn(1, text, width),
            pooled_projections=randn(1, 32 if small else 768),
            timestep=torch.full((1,), 0.7, device=device, dtype=dtype),
            guidance=torch.full((1,), 3.5, device=device, dtype=dtype),
            img_ids=ids.to(dtype),
            txt_ids=torch.zeros(text, 3, device=device, dtype=dtype),
            return_dict=False,
        )
    latent_frames, h, w = (3, 16, 16) if small else ((frames - 1) // 4 + 1, 60, 104)  # 480x832
    return dict(
        hidden_states=randn(1, 16, latent_frames, h, w),
        timestep=torch.full((1,), 700.0, device=device, dtype=dtype),
        encoder_hidden_states=randn(1, 512 if not small else 16, 64 if small else 4096),
        return_dict=False,
    )


def gpu_run(args: argparse.Namespace) -> dict[str, Any]:
    from seed_attn.paro import Calibrator, ParoRuntime, install
    from seed_diffusers.attention import route
    from seed_diffusers.families import FAMILIES
    from seed_quant.quantize import quantize_module

    device = args.device
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    family = FAMILIES["FluxPipeline" if args.model == "flux" else "WanPipeline"]
    inputs = _inputs(args.model, args.small, device, dtype, args.frames)

    def timed(net: Any, repeats: int) -> tuple[float, torch.Tensor]:
        with torch.no_grad():
            out = net(**inputs)[0]
            times = []
            for _ in range(repeats):
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                start = time.perf_counter()
                out = net(**inputs)[0]
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
        return statistics.median(times), out.float()

    rows: list[dict[str, Any]] = []
    net = _random_transformer(args.model, args.small, device, dtype)
    routed = route(net, family)
    params = sum(p.numel() for p in net.parameters())
    native_s, native = timed(net, args.repeats)
    rows.append({"variant": "native (diffusers SDPA)", "ms": native_s * 1e3})
    with tempfile.TemporaryDirectory() as plans:
        calibrator = Calibrator(groups=1)
        installed = install(net, calibrator, "paro-calibrate")
        start = time.perf_counter()
        with torch.no_grad():
            net(**inputs)
        calibrate_s = time.perf_counter() - start
        installed.remove()
        calibrator.plan(args.model, args.density, 8).save(Path(plans))
        runtime = ParoRuntime(Path(plans), args.model, args.density, 8, 8)
        installed = install(net, runtime, "paro")
        paro_s, paro = timed(net, args.repeats)
        installed.remove()
        rows.append({"variant": f"paro density {args.density} INT8", "ms": paro_s * 1e3, "out": paro})
        with torch.no_grad():
            quantize_module(net, "w8a8", keep=("x_embedder", "proj_out", "norm_out*", "patch_embedding"))
        w8_s, w8 = timed(net, args.repeats)
        rows.append({"variant": "w8a8", "ms": w8_s * 1e3, "out": w8})
        installed = install(net, runtime, "paro")
        both_s, both = timed(net, args.repeats)
        installed.remove()
        rows.append({"variant": f"w8a8 + paro {args.density} INT8", "ms": both_s * 1e3, "out": both})
    for r in rows:
        r["speedup"] = native_s * 1e3 / r["ms"]
        out = r.pop("out", None)
        if out is not None:  # agreement with the native step (random weights: a sanity check, not quality)
            r["cosine"] = float(torch.nn.functional.cosine_similarity(out.flatten(), native.flatten(), dim=0))
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
    tokens = (
        inputs["hidden_states"].shape[1]
        if args.model == "flux"
        else math.prod(inputs["hidden_states"].shape[2:]) // 4
    )
    print(
        f"{args.model}: {params / 1e9:.2f}B parameters, {tokens} image tokens, {routed} routed layers, {name}"
    )
    print(f"{'variant':<28} {'ms / step':>10} {'speed-up':>9} {'cosine':>7}")
    for r in rows:
        print(f"{r['variant']:<28} {r['ms']:>10.1f} {r['speedup']:>9.2f} {r.get('cosine', 1.0):>7.4f}")
    return {
        "device": name,
        "model": args.model,
        "small": args.small,
        "parameters": params,
        "image_tokens": tokens,
        "calibration_s": calibrate_s,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gpu", action="store_true", help="real-size transformer, one step (CUDA)")
    parser.add_argument("--model", choices=("flux", "wan"), default="flux")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="--gpu path at a CPU size (checks the script)")
    parser.add_argument("--density", type=float, default=0.3)
    parser.add_argument("--frames", type=int, default=81, help="--gpu --model wan: video frames (4n + 1)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--families", nargs="+", default=["sd3", "flux", "wan"])
    parser.add_argument("--size", type=int, default=64, help="CPU: image side in pixels")
    parser.add_argument("--layers", type=int, default=2, help="CPU: transformer blocks of the tiny pipelines")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = gpu_run(args) if args.gpu else cpu_run(args)
    default = f"diffusers-gpu-{args.model}.json" if args.gpu else "diffusers.json"
    path = args.json or Path(__file__).parent / "results" / default
    if args.gpu and args.small:
        path = args.json or Path(tempfile.gettempdir()) / "diffusers-gpu-small.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
