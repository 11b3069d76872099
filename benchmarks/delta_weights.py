"""Delta files (`seed_core.delta`) against the float16 weights they replace: bytes, weight error, and the
images each gives for the same prompts and seeds (PSNR of the delta's image against the float16 one's).

Each WEIGHTS=ACCEL:BITS item is a float16 file of a model directory (a student's dit.safetensors or a
tuned PARO backbone), the accelerator that runs it, and the bits to store its difference from the model's
dit.safetensors in. The delta file is written to a copy of the directory that holds it, beside the same
model, so the two runs differ in that file alone.

    uv run python benchmarks/delta_weights.py --model DIR \\
        --item students/tscd-4/dit.safetensors=tscd:steps=4:4 \\
        --item students/kd-1/dit.safetensors=kd:steps=1:8 \\
        [--item paro/32x32-t24-l1048.backbone.safetensors=paro:density=0.3:4 --size 256] \\
        --prompts 32 --json benchmarks/results/delta_weights.json
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from seed_core.delta import delta_record, load_delta, save_delta
from seed_core.files import read_prompts
from seed_core.pipeline import load
from seed_core.requests import GenerateRequest
from seed_core.weights import load_safetensors


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def images(model: Path, accel: str, prompts: list[str], size: int) -> list[np.ndarray]:
    pipeline = load(str(model), accelerators=[accel])
    out = []
    for i, prompt in enumerate(prompts):
        request = GenerateRequest(prompt, seed=i, width=size, height=size)
        out.append(np.asarray(pipeline.run(request).images[0]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="a model directory with float16 weights")
    parser.add_argument("--item", action="append", required=True, help="WEIGHTS=ACCEL:BITS (repeatable)")
    parser.add_argument("--prompts", type=int, default=32, help="prompts of the model's prompts.txt")
    parser.add_argument("--size", type=int, default=64, help="image side for a tuned backbone")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/delta_weights.json"))
    args = parser.parse_args()
    prompts = random.Random(0).sample(read_prompts(args.model / "prompts.txt"), args.prompts)
    base = args.model / "dit.safetensors"
    rows = []
    for item in args.item:
        weights, spec = item.split("=", 1)
        accel, bits = spec.rsplit(":", 1)
        size = args.size if accel.startswith("paro") else 64
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "model"
            shutil.copytree(args.model, copy)
            plan = f",plan={copy / Path(weights).parent}" if accel.startswith("paro") else ""
            if delta_record(args.model / weights) is not None:
                raise SystemExit(
                    f"{args.model / weights} is already a delta file; give the float16 file (e.g. from git "
                    "history, or `seed convert DELTA OUT --base MODEL_DIR`) in a copy of the model directory"
                )
            full = load_safetensors(args.model / weights)
            meta = json.loads(json.dumps(_metadata(args.model / weights)))
            save_delta(full, base, copy / weights, bits=int(bits), metadata=meta, force=True)
            start = time.perf_counter()
            back = load_delta(copy / weights, copy)
            seconds = time.perf_counter() - start
            ref = _base(base, full)
            moved = sum(float((full[k].float() - b.float()).square().sum()) for k, b in ref.items())
            error = sum(float((full[k].float() - back[k]).square().sum()) for k in full)
            norm = sum(float(v.float().square().sum()) for v in full.values())
            plain_plan = f",plan={args.model / Path(weights).parent}" if plan else ""
            a = images(args.model, accel + plain_plan, prompts, size)
            b = images(copy, accel + plan, prompts, size)
            values = [psnr(x, y) for x, y in zip(a, b, strict=True)]
            rows.append(
                {
                    "weights": weights,
                    "accel": accel,
                    "bits": int(bits),
                    "float16_bytes": (args.model / weights).stat().st_size,
                    "delta_bytes": (copy / weights).stat().st_size,
                    "moved_from_base": (moved / norm) ** 0.5,
                    "weight_error": (error / norm) ** 0.5,
                    "load_seconds": seconds,
                    "images": len(values),
                    "size": size,
                    "psnr_mean": float(np.mean(values)),
                    "psnr_min": float(np.min(values)),
                    "identical_images": int(sum(v == 99.0 for v in values)),
                }
            )
    print(f"| weights | bits | float16 MB | delta MB | ratio | moved from base | weight error | "
          f"PSNR mean / min ({rows[0]['images']} images) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['weights']} ({r['accel']}) | {r['bits']} | {r['float16_bytes'] / 1e6:.2f} | "
            f"{r['delta_bytes'] / 1e6:.2f} | {r['delta_bytes'] / r['float16_bytes']:.2f} | "
            f"{r['moved_from_base']:.3f} | {r['weight_error']:.1e} | "
            f"{r['psnr_mean']:.1f} / {r['psnr_min']:.1f} dB |"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    record = {"model": str(args.model), "prompts": args.prompts, "rows": rows}
    args.json.write_text(json.dumps(record, indent=2) + "\n")


def _metadata(path: Path) -> dict[str, str]:
    from seed_core.weights import read_metadata

    return {k: v for k, v in read_metadata(path).items() if k != "seed_delta"}


def _base(base: Path, full: dict) -> dict:
    state = load_safetensors(base)
    return {k: v for k, v in state.items() if k in full and full[k].shape == v.shape}


if __name__ == "__main__":
    main()
