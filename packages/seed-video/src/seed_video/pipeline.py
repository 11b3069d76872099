"""The SeedVR2 restore pipeline: frames in, frames out.

`restore_frames` resizes the clip to the output size (short side or W x H; sides cropped to multiples of
the VAE factor times the patch: 16 for the official models, 8 for seedvr2-mini), cuts it into batches of
`batch_frames` (4n + 1 frames; 2n + 1 for a 2x temporal VAE) that overlap by `overlap` frames, restores
each batch in one DiT step (`restore.restore_clip`), crossfades the overlaps linearly and returns the
frames in [0, 1]. A model directory holds `config.json` ({"dit": ..., "vae": ...}), `dit.safetensors`,
`vae.safetensors` and `pos_emb.safetensors` (the text embedding, key `pos_emb`).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from seed_core.errors import ConfigError, UsageError
from seed_core.pipeline import Pipeline
from seed_core.requests import MAX_SIDE
from seed_core.specs import LoadOptions, ModelSpec
from seed_core.weights import build_on_meta, load_component, load_safetensors, save_safetensors
from seed_vae.video import CausalVideoVAE, VideoVAEConfig, tiled_decode_video, tiled_encode_video
from seed_video.config import NaDiTConfig
from seed_video.nadit import NaDiT, float_dtype
from seed_video.restore import COLOR_FIXES, restore_clip

UNIT = 16  # output sides of the official models: VAE factor 8 x patch 2
DIT_PREFIX = "seedvr2_ema_"  # seedvr2_ema_3b.pth, seedvr2_ema_7b.pth, seedvr2_ema_7b_sharp.pth, repacks
CHECKPOINTS = (".pth", ".pt", ".safetensors")


def output_size(height: int, width: int, resolution: str | int, unit: int = UNIT) -> tuple[int, int]:
    """(height, width) of the output: `resolution` is the short side (int) or "WxH"; sides are rounded
    down to multiples of `unit` (the official script centre-crops to them)."""
    if isinstance(resolution, str) and "x" in resolution.lower():
        w, _, h = resolution.lower().partition("x")
        try:
            tw, th = int(w), int(h)
        except ValueError:
            raise UsageError(
                f"--resolution {resolution}: give the short side (720) or WIDTHxHEIGHT"
            ) from None
    else:
        try:
            short = int(resolution)
        except ValueError:
            raise UsageError(
                f"--resolution {resolution}: give the short side (720) or WIDTHxHEIGHT"
            ) from None
        scale = short / min(height, width)
        th, tw = round(height * scale), round(width * scale)
    if th < unit or tw < unit:
        raise UsageError(f"--resolution {resolution}: the output must be at least {unit} x {unit} pixels")
    if max(th, tw) > MAX_SIDE:  # as `seed generate`: a typo such as 99999 must not run for minutes
        raise UsageError(f"--resolution {resolution}: the output is {tw}x{th}; sides up to {MAX_SIDE} pixels")
    return th // unit * unit, tw // unit * unit


def resize_crop(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(T, 3, H, W) in [0, 1] -> (T, 3, h, w): bicubic resize covering `size`, centre crop."""
    th, tw = size
    _, _, h, w = frames.shape
    scale = max(th / h, tw / w)
    rh, rw = max(th, round(h * scale)), max(tw, round(w * scale))
    out = F.interpolate(frames, size=(rh, rw), mode="bicubic", antialias=True, align_corners=False)
    top, left = (rh - th) // 2, (rw - tw) // 2
    return out[:, :, top : top + th, left : left + tw].clamp(0, 1)


def batch_starts(total: int, batch: int, overlap: int) -> list[int]:
    """Start frames of batches of `batch` frames overlapping by `overlap` (the last one may be short)."""
    if total <= batch:
        return [0]
    step = batch - overlap
    starts = list(range(0, total - overlap, step))
    return [s for s in starts if s < total]


class SeedVR2Pipeline(Pipeline):
    default_steps = 1
    default_guidance = 1.0

    def __init__(
        self, spec: ModelSpec, dit: NaDiT, vae: CausalVideoVAE, pos_emb: torch.Tensor, device: str
    ) -> None:
        super().__init__(spec)
        self.dit, self.vae, self.pos_emb, self.device = dit, vae, pos_emb, torch.device(device)
        self.peaks: dict[str, float] = {}  # phase -> peak memory in MiB, filled by restore_frames
        self._offload: list[Any] = []

    def offload_blocks(self, count: int) -> int:
        """Keep the first `count` DiT blocks in CPU memory and move each to the device only while it runs
        (BlockSwap), so that a model larger than the GPU fits; returns how many blocks are offloaded."""
        for hook in self._offload:
            hook.remove()
        self._offload = []
        blocks = list(self.dit.blocks)
        if not 0 <= count <= len(blocks):
            raise UsageError(f"--offload-blocks {count}: the DiT has {len(blocks)} blocks")
        for block in blocks[:count]:
            block.to("cpu")

            def fetch(module: torch.nn.Module, _args: Any) -> None:
                module.to(self.device, non_blocking=True)

            def evict(module: torch.nn.Module, _args: Any, _out: Any) -> None:
                module.to("cpu")

            self._offload += [block.register_forward_pre_hook(fetch), block.register_forward_hook(evict)]
        return count

    def place(self, device: str, offload: int = 0) -> int:
        """Move the model to `device` except the first `offload` DiT blocks, which stream in per call
        (load on the CPU first, then place: the offloaded blocks never occupy the device all at once)."""
        self.device = torch.device(device)
        for i, block in enumerate(self.dit.blocks):
            if i >= offload:
                block.to(self.device)
        for name, child in self.dit.named_children():
            if name != "blocks":
                child.to(self.device)
        self.vae.to(self.device)
        self.pos_emb = self.pos_emb.to(self.device)
        return self.offload_blocks(offload)

    def _peak(self, name: str) -> None:
        """Record the peak memory of the phase that just ended (CUDA: allocated by torch; CPU: the
        process's peak resident size so far)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            value = torch.cuda.max_memory_allocated(self.device) / 2**20
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:
                import resource
            except ImportError:  # not on Windows: no peak to report
                return
            value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.peaks[name] = max(self.peaks.get(name, 0.0), value)

    def components(self) -> dict[str, Any]:
        return {"dit": self.dit, "vae": self.vae}

    @property
    def unit(self) -> int:
        """Output sides are multiples of this: the VAE's spatial factor times the DiT's patch."""
        return self.vae.cfg.factor * self.dit.cfg.patch[1]

    @classmethod
    def from_pretrained(cls, spec: ModelSpec, path: str | Path, options: LoadOptions) -> SeedVR2Pipeline:
        path = Path(path)
        dit_cfg, vae_cfg = read_configs(path)
        dit = load_component(
            build_on_meta(lambda: NaDiT(dit_cfg)), path / "dit.safetensors", dtype=options.dtype
        )
        vae = load_component(
            build_on_meta(lambda: CausalVideoVAE(vae_cfg)), path / "vae.safetensors", dtype=options.dtype
        )
        emb = load_safetensors(path / "pos_emb.safetensors").get("pos_emb")
        if emb is None or emb.ndim != 2 or emb.shape[1] != dit_cfg.txt_in_dim:
            raise ConfigError(
                f"{path / 'pos_emb.safetensors'}: needs 'pos_emb' of shape [L, {dit_cfg.txt_in_dim}]"
            )
        device = options.device
        return cls(spec, dit.to(device).eval(), vae.to(device).eval(), emb.float().to(device), device)

    @classmethod
    def from_official(
        cls, spec: ModelSpec, path: str | Path, dit_preset: str, options: LoadOptions
    ) -> SeedVR2Pipeline:
        """A folder of the official release's files (or repacks with the same keys): the DiT
        `seedvr2_ema_<preset>*.pth|safetensors` (see `official_dit_file`), the VAE
        `ema_vae*.pth|safetensors` (either attention naming) and the text embedding `pos_emb.pt`; or one
        DiT file of such a folder (a variant, e.g. the 7B's `_sharp`), with the other files beside it.
        `.pth` files are read with weights_only=True."""
        from seed_core.weights import load_into, read_state_dict
        from seed_vae.video import rename_legacy_attention

        path = Path(path)
        if path.is_file():
            if path.name.lower().startswith(("ema_vae", "pos_emb", "neg_emb")):
                raise UsageError(f"--weights {path}: name the DiT file ({DIT_PREFIX}*) or the folder")
            dit_file, path = path, path.parent
            where = f"{path} (beside the DiT file {dit_file.name}, where they are read from)"
        else:
            dit_file = official_dit_file(path, dit_preset)
            where = str(path)
        found = {p.name: p for p in path.iterdir() if p.suffix in CHECKPOINTS}
        vaes = sorted(n for n in found if n.startswith("ema_vae"))
        if not vaes:
            raise ConfigError(f"{where}: no VAE file (ema_vae*.pth or .safetensors)")
        vae_file = found[vaes[0]]  # repacks of the one VAE differ only in precision
        if "pos_emb.pt" not in found and "pos_emb.safetensors" not in found:
            raise ConfigError(f"{where}: no pos_emb.pt (the text embedding shipped with SeedVR2)")
        dtype = getattr(torch, options.dtype)
        state = read_state_dict(dit_file)
        other = official_preset(state)
        if other is not None and other != dit_preset:  # say which model the file is for, not a key diff
            raise ConfigError(
                f"{dit_file}: a SeedVR2-{other.upper()} checkpoint; load it with -m seedvr2-{other}"
            )
        dit = build_on_meta(lambda: NaDiT(NaDiTConfig.preset(dit_preset))).to(dtype)
        load_into(dit, state, source=str(dit_file))
        vae = build_on_meta(lambda: CausalVideoVAE(VideoVAEConfig.preset("seedvr2"))).to(dtype)
        load_into(vae, rename_legacy_attention(read_state_dict(vae_file)), source=str(vae_file))
        if "pos_emb.pt" in found:
            emb = torch.load(found["pos_emb.pt"], map_location="cpu", weights_only=True)
        else:
            emb = load_safetensors(found["pos_emb.safetensors"]).get("pos_emb")
        if not isinstance(emb, torch.Tensor) or emb.ndim != 2 or emb.shape[1] != dit.cfg.txt_in_dim:
            raise ConfigError(f"{path}: pos_emb must be a tensor of shape [L, {dit.cfg.txt_in_dim}]")
        device = options.device
        return cls(spec, dit.to(device).eval(), vae.to(device).eval(), emb.float().to(device), device)

    def save_pretrained(self, path: str | Path, *, dtype: str = "float16", force: bool = False) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_safetensors(self.dit.state_dict(), path / "dit.safetensors", dtype=dtype, force=force)
        save_safetensors(self.vae.state_dict(), path / "vae.safetensors", dtype=dtype, force=force)
        save_safetensors({"pos_emb": self.pos_emb}, path / "pos_emb.safetensors", dtype=dtype, force=force)
        config = {"seed_model": self.spec.name, "dit": self.dit.cfg.to_dict(), "vae": self.vae.cfg.to_dict()}
        (path / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    def restore_frames(
        self,
        frames: torch.Tensor,
        *,
        resolution: str | int = 720,
        batch_frames: int = 5,
        overlap: int = 0,
        color_fix: str = "wavelet",
        tile: int | None = None,
        tile_overlap: int | None = None,
        vae_chunk: int | None = None,
        seed: int = 0,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> torch.Tensor:
        """(T, 3, H, W) in [0, 1] -> restored (T, 3, h, w) in [0, 1]. `tile` / `tile_overlap`: VAE tiles in
        latent pixels (overlap a quarter of the tile by default); `vae_chunk`: latent frames the VAE
        encodes / decodes at a time (the same result; 1, as the official code, holds the least; 0: the
        whole batch at once; None: `default_vae_chunk`);
        `progress(phase, done, total)` after each phase (encode, dit, decode) of each batch."""
        check_settings(
            self.vae.cfg.temporal_factor, batch_frames, overlap, color_fix, tile, tile_overlap, vae_chunk
        )
        size = output_size(frames.shape[2], frames.shape[3], resolution, self.unit)
        video = resize_crop(frames.float(), size) * 2 - 1  # (T, 3, h, w) in [-1, 1]
        total = video.shape[0]
        out = torch.zeros_like(video)
        weight = torch.zeros(total, 1, 1, 1)
        starts = batch_starts(total, batch_frames, overlap)
        if vae_chunk is None:
            vae_chunk = default_vae_chunk(batch_frames, self.vae.cfg.temporal_factor, self.device.type)
        vae = _VAE(self.vae, tile, tile_overlap, vae_chunk or None)
        self.peaks = {}
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        dtype = float_dtype(self.dit)
        for i, start in enumerate(starts):
            clip = video[start : start + batch_frames]
            n = clip.shape[0]
            batch = clip.permute(1, 0, 2, 3)[None].to(self.device, dtype)  # (1, 3, n, h, w)
            generator = torch.Generator().manual_seed(seed + i)

            def phase(name: str, batch_index: int = i) -> None:
                self._peak(name)
                if progress:
                    progress(name, batch_index + 1, len(starts))

            with _half_kernels(dtype, self.device):
                restored = restore_clip(
                    self.dit, vae, batch, self.pos_emb[None], generator=generator, color_fix=color_fix,
                    phase=phase,
                )  # fmt: skip
            ramp = torch.ones(n)
            if overlap and i > 0:  # fade in over the frames the previous batch also made
                k = min(overlap, n)
                ramp[:k] = torch.arange(1, k + 1) / (k + 1)
            out[start : start + n] += (
                restored[0].permute(1, 0, 2, 3).float().cpu() * ramp[:, None, None, None]
            )
            weight[start : start + n] += ramp[:, None, None, None]
        return ((out / weight + 1) / 2).clamp(0, 1)


def default_vae_chunk(batch_frames: int, temporal_factor: int, device_type: str) -> int:
    """Latent frames per VAE call when not asked: 1 on a GPU for batches of more than 3 latent frames
    (the 3B at 720p, 21 frames: 22 GB to decode against 43 GB whole, by `seed_video.memory`), else the
    whole batch: streaming holds each convolution's kept frames at once, which for short batches costs
    more than it saves (5 frames: 11.9 GB against 10.0), and on the CPU, where memory is rarely short,
    chunks cost 4-6% in time."""
    latent = (batch_frames - 1) // temporal_factor + 1
    return 1 if device_type != "cpu" and latent > 3 else 0


def read_configs(path: Path) -> tuple[NaDiTConfig, VideoVAEConfig]:
    """The DiT and VAE configs of a model directory in our layout (its config.json)."""
    try:
        config = json.loads((path / "config.json").read_text())
        return NaDiTConfig.from_dict(config["dit"]), VideoVAEConfig.from_dict(config["vae"])
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(f"{path}: no config.json; not a SeedVR2 model directory") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path / 'config.json'}: needs 'dit' and 'vae' sections ({exc})") from None


def check_settings(
    temporal_factor: int,
    batch_frames: int,
    overlap: int = 0,
    color_fix: str = "none",
    tile: int | None = None,
    tile_overlap: int | None = None,
    vae_chunk: int | None = None,
) -> None:
    """Refuse, in one line naming the option, settings `restore_frames` cannot use."""
    f = temporal_factor
    if batch_frames < 1 or (batch_frames - 1) % f:
        raise UsageError(f"--batch-frames {batch_frames}: use {f}n + 1 frames (1, {f + 1}, {2 * f + 1}, ...)")
    if not 0 <= overlap < batch_frames:
        raise UsageError(f"--overlap {overlap}: use 0 .. batch-frames - 1")
    if color_fix not in (*COLOR_FIXES, "none"):
        raise UsageError(f"--color-fix {color_fix}: use wavelet, adain or none")
    if tile is not None and tile < 2:
        raise UsageError(f"--tile {tile}: use at least 2 latent pixels (e.g. 64)")
    if tile_overlap is not None and not (tile and 0 <= tile_overlap < tile):
        raise UsageError(f"--tile-overlap {tile_overlap}: needs --tile, and 0 .. tile - 1")
    if vae_chunk is not None and vae_chunk < 0:
        raise UsageError(f"--vae-chunk {vae_chunk}: use 1 or more latent frames, or 0 for the whole batch")


@contextlib.contextmanager
def _half_kernels(dtype: torch.dtype, device: torch.device) -> Iterator[None]:
    """A half dtype whose kernel the device lacks (torch has no bfloat16 / float16 version of some ops on
    some backends) fails the first batch: say so in one line instead of a traceback."""
    try:
        yield
    except (NotImplementedError, RuntimeError) as exc:
        missing = "not implemented for" in str(exc) or "not supported" in str(exc)
        if dtype == torch.float32 or not missing:
            raise
        name = str(dtype).removeprefix("torch.")
        raise UsageError(
            f"--dtype {name} does not run on {device} with torch {torch.__version__} "
            f"({str(exc).strip().splitlines()[0]}); use --dtype float32"
        ) from None


class _VAE(torch.nn.Module):
    """The VAE with optional spatial tiles (`tile` latent pixels overlapping by `overlap`, a quarter by
    default) and temporal chunks (`chunk` latent frames)."""

    def __init__(self, vae: CausalVideoVAE, tile: int | None, overlap: int | None, chunk: int | None) -> None:
        super().__init__()
        self.vae, self.cfg, self.chunk = vae, vae.cfg, chunk
        self.tile = tile
        self.overlap = overlap if overlap is not None else (tile or 0) // 4

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if not self.tile:
            return self.vae.encode(x, chunk=self.chunk)
        f, o = self.cfg.factor, self.overlap
        return tiled_encode_video(
            self.vae, x, tile=self.tile * f, overlap=o * f, margin=o * f, chunk=self.chunk
        )

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if not self.tile:
            return self.vae.decode(z, chunk=self.chunk)
        margin = max(self.overlap // 2, 1)
        return tiled_decode_video(
            self.vae, z, tile=self.tile, overlap=self.overlap, margin=margin, chunk=self.chunk
        )


def official_dit_file(folder: Path, preset: str) -> Path:
    """The DiT checkpoint of SeedVR2-`preset` in a folder that may hold several models (a ComfyUI models
    folder): `seedvr2_ema_<preset>*` by name, the plain file over the `_sharp` variant. Any other choice
    (no file, or several, e.g. .pth and an fp16 repack) is refused in one line that lists the files."""

    def model(name: str) -> list[str]:  # "seedvr2_ema_7b_sharp_fp16.safetensors" -> ["7b", "sharp", "fp16"]
        return re.split(r"[_.-]", Path(name).stem.lower().removeprefix(DIT_PREFIX))

    names = sorted(
        p.name for p in folder.iterdir() if p.name.lower().startswith(DIT_PREFIX) and p.suffix in CHECKPOINTS
    )
    if not names:
        raise ConfigError(f"{folder}: no DiT file ({DIT_PREFIX}{preset}*.pth or .safetensors)")
    ours = [n for n in names if model(n)[0] == preset]
    if not ours:
        other = model(names[0])[0]
        if other in ("3b", "7b") and all(model(n)[0] == other for n in names):
            raise ConfigError(
                f"{folder}: no {DIT_PREFIX}{preset}* file; {', '.join(names)}: a SeedVR2-{other.upper()} "
                f"checkpoint; load it with -m seedvr2-{other}"
            )
        raise ConfigError(
            f"{folder}: no {DIT_PREFIX}{preset}* file among {', '.join(names)}; "
            "name the DiT file to load with --weights FILE"
        )
    plain = [n for n in ours if "sharp" not in model(n)]
    chosen = plain or ours
    if len(chosen) > 1:
        raise ConfigError(
            f"{folder}: several SeedVR2-{preset.upper()} DiT files ({', '.join(ours)}); "
            f"choose one with --weights FILE, e.g. --weights {folder / chosen[0]}"
        )
    return folder / chosen[0]


def official_preset(state: dict[str, torch.Tensor]) -> str | None:
    """The official model ("3b" or "7b") whose width the state dict has (from its patch embedding)."""
    weight = state.get("vid_in.proj.weight")
    if weight is None:
        return None
    for name in ("3b", "7b"):
        if weight.shape[0] == NaDiTConfig.preset(name).dim:
            return name
    return None


def random_pipeline(spec: ModelSpec, options: LoadOptions, seed: int = 0) -> SeedVR2Pipeline:
    """Tiny random weights: for tests and for trying the plumbing, not for restoring anything."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dit = NaDiT(NaDiTConfig.preset("tiny"))
        vae = CausalVideoVAE(VideoVAEConfig.preset("tiny"))
        emb = torch.randn(4, dit.cfg.txt_in_dim)
    dtype = getattr(torch, options.dtype)
    return SeedVR2Pipeline(
        spec, dit.to(options.device, dtype).eval(), vae.to(options.device, dtype).eval(), emb, options.device
    )
