"""Training recipe for seedvr2-mini: SeedVR2's architecture family (causal video VAE + NaDiT, one step)
trained on moving shapes clips and their degradations (`seed_mini.clips`).

Stage 1 trains the causal video VAE ("mini" preset: 4x spatial, 2x temporal, 16 channels) on clean and
degraded clips. Stage 2 trains the NaDiT ("mini" preset) to restore in one step exactly as SeedVR2 runs:
[noise | degraded latent | mask] at t = 1000 -> v, restored latent = noise - v; the loss is the squared
error of that latent against the clean clip's latent. SeedVR2's adversarial post-training is not
reproduced: a regression target is what the PSNR acceptance measures. Batches are pure functions of
(seed, step) and checkpoints are atomic, so a killed run resumes on the same curve.

    python -m seed_mini.train_restore vae --out runs/vr-vae --steps 3000
    python -m seed_mini.train_restore dit --out runs/vr-dit --vae runs/vr-vae --steps 4000
    python -m seed_mini.train_restore export --out runs/vr-dit --vae runs/vr-vae --to DIR
    python -m seed_mini.train_restore eval --model DIR
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from seed_dit.training import EMA
from seed_mini.clips import clip_batch, restoration_batch
from seed_mini.train import (
    CHECKPOINT,
    Progress,
    _log,
    load_checkpoint,
    optimizer_step,
    save_checkpoint,
    trim_log,
)
from seed_vae.loss import AutoencoderLoss
from seed_vae.model import LatentDistribution
from seed_vae.video import CausalVideoVAE, VideoVAEConfig
from seed_video.config import NaDiTConfig
from seed_video.nadit import NaDiT

FRAMES = 5  # frames per training clip (2n + 1 for the 2x temporal VAE)
TEXT_TOKENS = 4  # the fixed "positive prompt" embedding, as SeedVR2 ships pos_emb.pt


def _schedule(opt: torch.optim.Optimizer, steps: int, warmup: int = 100) -> Any:
    return torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
        ),
    )


def _resume(out: Path, parts: dict[str, Any], log: Callable[[str], None]) -> int:
    state = load_checkpoint(out / CHECKPOINT)
    if state is None:
        return 0
    for name, part in parts.items():
        part.load_state_dict(state[name])
    trim_log(out, int(state["step"]))
    log(f"resumed from step {state['step']}")
    return int(state["step"])


def _frames(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B T, C, H, W)."""
    return x.transpose(1, 2).flatten(0, 1)


def train_vae(
    out: Path,
    *,
    steps: int,
    batch: int = 8,
    crop: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    temporal_downsamples: int = 1,
    sample: bool = True,
    log: Callable[[str], None] = print,
    checkpoint_every: int = 200,
    stop_after: int | None = None,
) -> CausalVideoVAE:
    """Stage 1: the causal video VAE on 32 px crops of clean clips (a VAE learns the world, not its
    degradations; the DiT learns to read degraded clips' latents)."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vae = CausalVideoVAE(VideoVAEConfig.preset("mini", temporal_downsamples=temporal_downsamples))
    loss_fn = AutoencoderLoss()
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = _schedule(opt, steps)
    step = _resume(out, {"model": vae, "optimizer": opt, "scheduler": sched}, log)
    progress = Progress(steps, step)
    while step < steps:
        x = clip_batch(seed, step, batch, FRAMES, 64, crop)
        mean, logvar = vae.encoder(x).chunk(2, dim=1)
        dist = LatentDistribution(mean, logvar.clamp(-30.0, 20.0))
        z = dist.sample(torch.Generator().manual_seed(seed * 7919 + step)) if sample else mean
        recon = vae.decoder(z)
        terms = loss_fn(_frames(recon), _frames(x), dist)
        optimizer_step(terms.total, vae, opt, sched)
        step += 1
        _log(out, {"step": step, "loss": terms.total.item(), "l1": terms.l1.item()})
        if step % 50 == 0:
            log(progress.line(step, terms.total.item()))
        if step % checkpoint_every == 0 or step == steps:
            state = {
                "model": vae.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
            }
            save_checkpoint(out / CHECKPOINT, {**state, "step": step})
        if stop_after is not None and step >= stop_after:  # tests: a run killed here
            return vae
    export_vae(vae, out)
    return vae


def export_vae(vae: CausalVideoVAE, out: Path) -> None:
    """Fit the latent scale (unit variance for the DiT) on fresh clips; write vae.safetensors + vae.json."""
    from seed_core.weights import save_safetensors

    clean, degraded = restoration_batch(12345, 0, 8, FRAMES, 64)
    with torch.no_grad():
        z = vae.encoder(torch.cat((clean, degraded))).chunk(2, dim=1)[0]
    vae.cfg = vae.cfg.replace(scaling_factor=float(1.0 / z.std()), shift_factor=float(z.mean()))
    save_safetensors(vae.state_dict(), out / "vae.safetensors", force=True)
    vae.cfg.to_json(out / "vae.json")


def load_vae(directory: Path) -> CausalVideoVAE:
    from seed_core.weights import load_model

    cfg = VideoVAEConfig.from_json(directory / "vae.json")
    return load_model(lambda: CausalVideoVAE(cfg), directory / "vae.safetensors", dtype="float32").eval()


def _spec() -> Any:
    from seed_core.specs import ModelSpec

    return ModelSpec("seedvr2-mini", "seedvr2", ("restore",), lambda spec, options: None)


def text_embedding(seed: int = 0) -> torch.Tensor:
    """The mini model's fixed text condition (TEXT_TOKENS, 64), like SeedVR2's shipped pos_emb.pt."""
    return torch.randn(
        TEXT_TOKENS, NaDiTConfig.preset("mini").txt_in_dim, generator=torch.Generator().manual_seed(seed)
    )


def restore_latent(dit: NaDiT, lq: torch.Tensor, text: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """One step as SeedVR2 runs it: [noise | LQ latent | mask] at t = 1000, restored latent = noise - v."""
    mask = torch.ones_like(lq[:, :1])
    t = torch.full((lq.shape[0],), 1000.0)
    v = dit(torch.cat((noise, lq, mask), dim=1), text.expand(lq.shape[0], -1, -1), t)
    return noise - v


def train_dit(
    out: Path,
    vae_dir: Path,
    *,
    steps: int,
    batch: int = 8,
    lr: float = 5e-4,
    seed: int = 0,
    size: int = 64,
    log: Callable[[str], None] = print,
    checkpoint_every: int = 200,
    stop_after: int | None = None,
) -> NaDiT:
    """Stage 2: the one-step restorer on `size` px clips, latent regression to the clean clip."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vae = load_vae(vae_dir).requires_grad_(False)
    dit = NaDiT(NaDiTConfig.preset("mini"))
    ema = EMA(dit, decay=0.995)  # runs are short: average the last few hundred steps
    text = text_embedding(seed)[None]
    opt = torch.optim.AdamW(dit.parameters(), lr=lr, weight_decay=0.0)
    sched = _schedule(opt, steps)
    step = _resume(out, {"model": dit, "ema": ema, "optimizer": opt, "scheduler": sched}, log)
    ema.updates = step
    progress = Progress(steps, step)
    while step < steps:
        clean, degraded = restoration_batch(seed + 1, step, batch, FRAMES, size)
        with torch.no_grad():
            hq, lq = vae.encode(clean), vae.encode(degraded)
        noise = torch.randn(hq.shape, generator=torch.Generator().manual_seed(seed * 7919 + step))
        loss = (restore_latent(dit, lq, text, noise) - hq).pow(2).mean()
        optimizer_step(loss, dit, opt, sched)
        ema.update(dit)
        step += 1
        _log(out, {"step": step, "loss": loss.item()})
        if step % 50 == 0:
            log(progress.line(step, loss.item()))
        if step % checkpoint_every == 0 or step == steps:
            state = {"model": dit.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict()}
            save_checkpoint(out / CHECKPOINT, {**state, "scheduler": sched.state_dict(), "step": step})
        if stop_after is not None and step >= stop_after:
            break
    return dit


def export(out: Path, vae_dir: Path, to: Path, seed: int = 0, live: bool = False) -> None:
    """The EMA DiT of the last checkpoint (`live`: the raw weights), the VAE and the text embedding as a
    SeedVR2 model directory."""
    from seed_video.pipeline import SeedVR2Pipeline

    state = load_checkpoint(out / CHECKPOINT)
    if state is None:
        raise SystemExit(f"{out}: no checkpoint to export")
    dit = NaDiT(NaDiTConfig.preset("mini"))
    dit.load_state_dict(state["model" if live else "ema"])
    pipe = SeedVR2Pipeline(_spec(), dit.eval(), load_vae(vae_dir), text_embedding(seed), "cpu")
    pipe.save_pretrained(to, dtype="float16", force=True)
    meta = {
        "step": int(state["step"]),
        "weights": "live" if live else "ema",
        "recipe": "python -m seed_mini.train_restore",
        "seed": seed,
    }
    (to / "training.json").write_text(json.dumps(meta, indent=2) + "\n")


def evaluate(
    pipeline: Any,
    *,
    clips: int = 16,
    frames: int = 17,
    batch_frames: int = 5,
    overlap: int = 0,
    size: int = 64,
    seed: int = 2026,
    color_fix: str = "none",
) -> dict[str, Any]:
    """Held-out restoration quality of a SeedVR2 pipeline (clips from a seed training never uses).

    PSNR of the restored clip and of the bicubic-upscaled degraded input (the restorer's own input)
    against the clean clip, and flicker at batch boundaries: with `batch_frames` per DiT call (sharing
    `overlap` frames), the mean absolute error of the restored clip's frame-to-frame change against the
    clean clip's (which is the motion) for the frame pairs where the batches making the frames change
    (the boundaries) and for the pairs inside a batch; `flicker_ratio` is boundary over inside."""
    import statistics

    from seed_mini.clips import psnr
    from seed_video.pipeline import batch_starts

    starts = batch_starts(frames, batch_frames, overlap)
    makers = [frozenset(i for i, s in enumerate(starts) if s <= t < s + batch_frames) for t in range(frames)]

    gains, restored_psnr, input_psnr, vae_psnr = [], [], [], []
    cross, inside = [], []
    for i in range(clips):
        clean, degraded = restoration_batch(seed, i, 1, frames, size)
        with torch.no_grad():  # the VAE's own ceiling: the clean clip encoded and decoded
            vae_psnr.append(psnr(pipeline.vae.decode(pipeline.vae.encode(clean)), clean))
        lq = (degraded[0].transpose(0, 1) + 1) / 2  # (T, 3, S, S) in [0, 1]
        out = pipeline.restore_frames(
            lq, resolution=size, batch_frames=batch_frames, overlap=overlap, color_fix=color_fix, seed=i
        )
        restored = out.transpose(0, 1)[None] * 2 - 1  # (1, 3, T, S, S)
        restored_psnr.append(psnr(restored, clean))
        input_psnr.append(psnr(degraded, clean))
        gains.append(restored_psnr[-1] - input_psnr[-1])
        d_out = (restored[:, :, 1:] - restored[:, :, :-1]) / 2  # (1, 3, T - 1, S, S), pixel units
        d_ref = (clean[:, :, 1:] - clean[:, :, :-1]) / 2
        error = (d_out - d_ref).abs().mean(dim=(0, 1, 3, 4))  # per frame pair
        for t in range(frames - 1):
            (cross if makers[t] != makers[t + 1] else inside).append(float(error[t]))
    return {
        "clips": clips,
        "frames": frames,
        "size": size,
        "batch_frames": batch_frames,
        "overlap": overlap,
        "color_fix": color_fix,
        "psnr_vae_clean": statistics.mean(vae_psnr),
        "psnr_restored": statistics.mean(restored_psnr),
        "psnr_input": statistics.mean(input_psnr),
        "psnr_gain": statistics.mean(gains),
        "psnr_gain_min": min(gains),
        "temporal_error_boundary": statistics.mean(cross),
        "temporal_error_inside": statistics.mean(inside),
        "flicker_ratio": statistics.mean(cross) / statistics.mean(inside),
    }


def vae_tiling(vae: CausalVideoVAE, size: tuple[int, int] = (128, 256), tile: int = 16) -> dict[str, float]:
    """Tiled against whole decoding of a clean clip's latents (tiles of `tile` latent pixels overlapping
    by a quarter): PSNR between the two, the largest pixel difference in [0, 1] units, and the seam ratio:
    the mean difference in the bands where tiles are blended over the mean difference elsewhere (a
    visible seam is a band that differs more than the rest)."""
    import random

    from seed_mini import world
    from seed_mini.clips import psnr, sample_clip
    from seed_vae.tiling import tile_starts
    from seed_vae.video import tiled_decode_video

    h, w = size
    clip = world.render_batch(sample_clip(random.Random(5), FRAMES), (w, h)) * 2 - 1  # (T, 3, H, W)
    overlap, f = tile // 4, vae.cfg.factor
    with torch.no_grad():
        z = vae.encode(clip.transpose(0, 1)[None])
        whole = vae.decode(z)
        tiled = tiled_decode_video(vae, z, tile=tile, overlap=overlap, margin=tile // 8)
    error = (tiled - whole).abs().mean(dim=(0, 1, 2))  # (H, W)

    def bands(length: int) -> torch.Tensor:  # output pixels where two tiles overlap along an axis
        near = torch.zeros(length * f, dtype=torch.bool)
        starts = tile_starts(length, tile, tile - overlap)
        for start, end in zip(starts[1:], starts[:-1], strict=True):
            near[start * f : (end + tile) * f] = True
        return near

    seam = bands(z.shape[-2])[:, None] | bands(z.shape[-1])[None, :]
    return {
        "tile_latent_px": tile,
        "psnr_tiled_vs_whole": psnr(tiled, whole),
        "max_abs_difference": float((tiled - whole).abs().max()) / 2,
        "seam_ratio": float(error[seam].mean() / error[~seam].mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m seed_mini.train_restore", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="stage", required=True)
    ev = sub.add_parser("eval", help="held-out PSNR gain and boundary flicker of a model directory")
    ev.add_argument("--model", type=Path, required=True)
    ev.add_argument("--clips", type=int, default=16)
    ev.add_argument("--color-fix", default="none")
    ev.add_argument("--overlap", type=int, default=0)
    ev.add_argument("--json", type=Path)
    for name in ("vae", "dit", "export"):
        p = sub.add_parser(name)
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--steps", type=int, default=3000)
        p.add_argument("--batch", type=int, default=8)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--lr", type=float, default=1e-3 if name == "vae" else 5e-4)
        if name == "vae":
            p.add_argument("--temporal-downsamples", type=int, default=1)
            p.add_argument("--mean", action="store_true", help="decode the posterior mean, no sampling")
        else:
            p.add_argument("--vae", type=Path, required=True)
        if name == "export":
            p.add_argument("--to", type=Path, required=True)
            p.add_argument("--live", action="store_true", help="the raw weights, not the EMA")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.stage == "eval":
        from seed_core.specs import LoadOptions
        from seed_video.pipeline import SeedVR2Pipeline

        pipe = SeedVR2Pipeline.from_pretrained(_spec(), args.model, LoadOptions())
        result = evaluate(pipe, clips=args.clips, color_fix=args.color_fix, overlap=args.overlap)
        result["vae_tiling"] = vae_tiling(pipe.vae)
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
    elif args.stage == "vae":
        train_vae(
            args.out,
            steps=args.steps,
            batch=args.batch,
            lr=args.lr,
            seed=args.seed,
            temporal_downsamples=args.temporal_downsamples,
            sample=not args.mean,
        )
    elif args.stage == "dit":
        train_dit(args.out, args.vae, steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed)
    else:
        export(args.out, args.vae, args.to, seed=args.seed, live=args.live)
    return 0


if __name__ == "__main__":
    sys.exit(main())
