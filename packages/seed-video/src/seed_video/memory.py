"""How much GPU memory a SeedVR2 restore needs, counted on fake tensors (`seed_core.memory`): no GPU and
no weights needed, so `seed restore --estimate-memory` can answer before a download or a long run.

One batch is what matters: batches run one after another and free what they made. Per phase (encode,
DiT, decode) the peak is the tensors of that phase at their most, plus the weights on the device: the
DiT's blocks that are not offloaded, its other parts, the VAE, the text embedding, and during the DiT
phase the one offloaded block being streamed through.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from seed_core.memory import MIB, PeakTracker, fake_device, module_bytes, track
from seed_core.specs import ModelSpec
from seed_core.weights import skipped_init
from seed_vae.video import CausalVideoVAE, VideoVAEConfig
from seed_video.config import NaDiTConfig
from seed_video.nadit import NaDiT
from seed_video.pipeline import _VAE, read_configs
from seed_video.restore import restore_clip

PHASES = ("encode", "dit", "decode")


@dataclass(frozen=True)
class RestoreSettings:
    """What sets the memory of one batch: its frames and output size, and the memory options of
    `seed restore`."""

    frames: int
    height: int
    width: int
    dtype: str = "bfloat16"
    tile: int | None = None
    tile_overlap: int | None = None
    vae_chunk: int | None = 1  # None or 0: the whole batch at once
    offload_blocks: int = 0
    text_tokens: int = 58  # rows of the official pos_emb.pt


# What kernels borrow beyond the tensors counted: on an H200 the VAE phases measured 10-11% above their
# estimate (cuDNN's convolution workspaces), the DiT phase 1% (benchmarks/RESULTS.md)
WORKSPACE_MARGIN = 0.12
TILES = (64, 48, 32, 24, 16)  # latent pixels, the sizes `plan_restore` tries in turn


def estimate_restore(
    dit_cfg: NaDiTConfig, vae_cfg: VideoVAEConfig, s: RestoreSettings, device: str = "cuda"
) -> dict[str, float]:
    """Peak memory in MiB on `device` per phase of restoring one batch with `s`, plus the weights held:
    {"encode", "dit", "decode", "weights"}. Tensors as allocated, without kernel workspaces (see
    `seed_core.memory`)."""
    return _estimate(dit_cfg, vae_cfg, [s], device)[0][1]


def plan_restore(
    dit_cfg: NaDiTConfig,
    vae_cfg: VideoVAEConfig,
    base: RestoreSettings,
    budget_mib: float,
    device: str = "cuda",
) -> tuple[RestoreSettings, dict[str, float], bool]:
    """The first settings, from `base` down a ladder of savings (VAE chunks of 1 latent frame, every DiT
    block streamed, then tiles of 64, 48, 32, 24, 16 latent pixels; never less saving than `base` asks
    for), whose estimated peak plus `WORKSPACE_MARGIN` fits `budget_mib`. Returns (settings, peaks,
    fits); when nothing fits, the last settings tried with fits False."""

    def ladder() -> list[RestoreSettings]:
        steps = [base]
        if base.vae_chunk is None or base.vae_chunk != 1:
            steps.append(replace(steps[-1], vae_chunk=1))
        if base.offload_blocks < dit_cfg.layers:
            steps.append(replace(steps[-1], offload_blocks=dit_cfg.layers))
        for tile in TILES:
            if steps[-1].tile is None or tile < steps[-1].tile:
                steps.append(replace(steps[-1], tile=tile, tile_overlap=None))
        return steps

    def fits(peaks: dict[str, float]) -> bool:
        return max(peaks[name] for name in PHASES) * (1 + WORKSPACE_MARGIN) <= budget_mib

    tried = _estimate(dit_cfg, vae_cfg, ladder(), device, stop=fits)
    settings, peaks = tried[-1]
    return settings, peaks, fits(peaks)


def _estimate(
    dit_cfg: NaDiTConfig,
    vae_cfg: VideoVAEConfig,
    settings: list[RestoreSettings],
    device: str,
    stop: Callable[[dict[str, float]], bool] | None = None,
) -> list[tuple[RestoreSettings, dict[str, float]]]:
    """`estimate_restore` for each of `settings` in turn (one dtype and text length), the models built
    once; ends after the first whose peaks satisfy `stop`."""
    dtype = getattr(torch, settings[0].dtype)
    done: list[tuple[RestoreSettings, dict[str, float]]] = []
    with fake_device(dtype, device) as fake:
        with fake, skipped_init():  # fake weights hold no values to initialise
            dit = NaDiT(dit_cfg).eval()
            vae = CausalVideoVAE(vae_cfg).eval()
            text = torch.zeros(1, settings[0].text_tokens, dit_cfg.txt_in_dim, dtype=torch.float32)
        for s in settings:
            if not 0 <= s.offload_blocks <= len(dit.blocks):
                raise ValueError(f"offload_blocks {s.offload_blocks}: the DiT has {len(dit.blocks)} blocks")
            offloaded = [module_bytes(b) for b in dit.blocks[: s.offload_blocks]]
            weights = module_bytes(dit) + module_bytes(vae) - sum(offloaded)
            video = torch.zeros(1, 3, s.frames, s.height, s.width, device=fake, dtype=dtype)
            peaks: dict[str, float] = {}
            with track(fake.type) as tracker:
                tracker.hold(video)
                tracker.hold(text)

                def phase(name: str, tracker: PeakTracker = tracker, peaks: dict[str, float] = peaks) -> None:
                    peaks[name] = tracker.peak
                    tracker.reset()

                restore_clip(
                    dit, _VAE(vae, s.tile, s.tile_overlap, s.vae_chunk or None), video, text,
                    generator=torch.Generator().manual_seed(0), phase=phase,
                )  # fmt: skip
            del video
            # blocks differ (the last ones of 3B / 7B have no text path): the largest streamed one counts
            streamed = {"dit": max(offloaded, default=0)}
            out = {name: (peaks[name] + weights + streamed.get(name, 0)) / MIB for name in PHASES}
            done.append((s, {**out, "weights": weights / MIB}))
            if stop is not None and stop(done[-1][1]):
                break
    return done


def model_configs(spec: ModelSpec, weights: str | None) -> tuple[NaDiTConfig, VideoVAEConfig] | None:
    """The DiT and VAE configs of a SeedVR2 model without its weights: from a model directory's
    config.json, else from the model's meta build (the official presets); None if neither says."""
    folder = Path(weights or spec.weights or "")
    if (weights or spec.weights) and (folder / "config.json").is_file():
        return read_configs(folder)
    if spec.meta is not None:
        parts = spec.meta()
        return parts["dit"].cfg, parts["vae"].cfg
    return None
