"""Training recipes for the mini models: the autoencoder, then seedream-mini (text-to-image, editing and
multi-reference composition in one model, as Seedream 4.0 does), on the shapes world.

Reproducible and resumable: every batch is a pure function of (seed, step), and a checkpoint (model,
optimizer, EMA, step) is written atomically every `checkpoint_every` steps, so a killed run resumes where
it stopped and follows the same loss curve. The same code runs on a GPU (`--device cuda`).

    python -m seed_mini.train vae --out runs/vae --steps 4000
    python -m seed_mini.train vae --out runs/dec --decoder-from runs/vae --steps 4500   # decoder only
    python -m seed_mini.train install-vae --out runs/dec --to MODEL_DIR   # swap a model's decoder
    python -m seed_mini.train dit --out runs/dit --vae runs/vae --steps 100000
    python -m seed_mini.train export --out runs/dit --vae runs/vae --to DIR   # EMA of the last checkpoint
    python -m seed_mini.train bundle --out runs/dit --to DIR       # EMA + live weights as two fp16 files
    python -m seed_mini.train unbundle --bundle FILE --vae runs/vae --to DIR
    python -m seed_mini.train data --out DIR [--count N]    # captioned renders: `seed distill --data`
    python -m seed_mini.train edits --out DIR [--count N]   # edit sources + instructions: `--edits`
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import multiprocessing
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from seed_core.budget import TimeBudget
from seed_core.files import atomic_path
from seed_dit.config import TASKS, MMDiTConfig
from seed_dit.model import Conditioning, MMDiT
from seed_dit.pipeline import PipelineConfig, SeedreamPipeline
from seed_dit.text import HashWordTokenizer, MiniTextEncoder
from seed_dit.training import EMA, flow_matching_loss, logit_normal_timesteps, make_flow_batch
from seed_mini import world
from seed_vae import Autoencoder, AutoencoderConfig
from seed_vae.loss import AutoencoderLoss

CHECKPOINT = "checkpoint.pt"
# the mini text encoder's tokenizer (build_dit makes the encoder with it): a pure function of the prompt,
# so the processes that draw the scenes also turn the prompts into ids
TOKENIZER = HashWordTokenizer(vocab=4096, max_length=24)


def batch_rng(seed: int, step: int) -> random.Random:
    """The data of step `step` depends on nothing else: resuming replays exactly the same batches."""
    return random.Random(seed * 1_000_003 + step)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path, force=True) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)  # type: ignore[no-any-return]


@dataclass
class Progress:
    total: int
    start_step: int
    budget: float | None = None  # seconds (--minutes): the run ends by then, whatever the step count says
    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = time.perf_counter()

    def line(self, step: int, loss: float) -> str:
        elapsed = time.perf_counter() - self.started
        rate = (step - self.start_step) / max(elapsed, 1e-9)
        eta = (self.total - step) / max(rate, 1e-9)
        if self.budget is not None:
            eta = min(eta, max(self.budget - elapsed, 0.0))
        return f"step {step}/{self.total}  loss {loss:.4f}  {rate:.2f} steps/s  eta {eta / 60:.1f} min"


class StepProfiler:
    """torch.profiler over `steps` training steps from step `begin` (once the loop and its workers are
    warm); the operator tables, by self time on the device and on the host, go to `path`."""

    def __init__(self, path: Path, steps: int, begin: int, device: torch.device | str) -> None:
        self.path, self.steps, self.begin, self.device = path, steps, begin, torch.device(device)
        self.prof: torch.profiler.profile | None = None
        self.started = 0.0

    def after(self, step: int) -> bool:
        """Call after each step, with the number of steps done; True once the tables are written (the
        profiler's overhead and the writing then lie behind: a rate timed across them is off)."""
        if self.steps <= 0:
            return False
        cuda = self.device.type == "cuda"
        if self.prof is None and step == self.begin:
            if cuda:  # time the profiled steps only, not the work queued before them
                torch.cuda.synchronize(self.device)
            activities = [torch.profiler.ProfilerActivity.CPU]
            activities += [torch.profiler.ProfilerActivity.CUDA] if cuda else []
            self.prof = torch.profiler.profile(activities=activities)
            self.prof.__enter__()
            self.started = time.perf_counter()
        elif self.prof is not None and step == self.begin + self.steps:
            if cuda:
                torch.cuda.synchronize(self.device)
            seconds = time.perf_counter() - self.started
            self.prof.__exit__(None, None, None)
            table = self.prof.key_averages()
            calls = sum(e.count for e in table if e.key.startswith("aten::")) / self.steps
            lines = [
                f"{self.steps} steps after step {self.begin} on {self.device}: {seconds:.3f} s, "
                f"{self.steps / seconds:.2f} steps/s under the profiler",
                f"operator calls a step: {calls:.0f}",
            ]
            for key in (["self_cuda_time_total"] if cuda else []) + ["self_cpu_time_total"]:
                lines += ["", f"by {key}:", table.table(sort_by=key, row_limit=40, max_name_column_width=60)]
            with atomic_path(self.path, force=True) as tmp:  # a resumed run profiles again
                tmp.write_text("\n".join(lines) + "\n")
            self.prof, self.steps = None, 0
            return True
        return False

    def close(self) -> None:
        """Stop a profile that the run ended before it was complete (nothing is written)."""
        if self.prof is not None:
            self.prof.__exit__(None, None, None)
            self.prof = None


def optimizer_step(
    loss: torch.Tensor, model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any
) -> None:
    """Backward, clip the gradient norm to 1, step the optimizer and the schedule."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()


def trim_log(out: Path, step: int) -> None:
    """Drop the log records after `step` (a killed run logged past its last checkpoint; the resumed run
    logs those steps again), so the log holds one record per step."""
    path = out / "log.jsonl"
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
    if len(kept) < len(lines):
        with atomic_path(path, force=True) as tmp:
            tmp.write_text("".join(kept))


def _log(out: Path, record: dict[str, Any]) -> None:
    with open(out / "log.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")


# --- stage 1: the autoencoder ---------------------------------------------------------------------------


def vae_batch(seed: int, step: int, batch: int, size: int) -> torch.Tensor:
    rng = batch_rng(seed, step)
    scenes = [world.sample_scene(rng) for _ in range(batch)]
    return world.render_batch(scenes, size) * 2 - 1


def train_vae(
    out: Path,
    *,
    steps: int,
    batch: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    preset: str = "mini-f4",
    device: str = "cpu",
    checkpoint_every: int = 200,
    log: Callable[[str], None] = print,
    stop_after: int | None = None,
    decoder_from: Path | None = None,
) -> Autoencoder:
    """Train (or resume) the autoencoder; writes `out/vae.safetensors` + `out/vae.json` at the end.

    With `decoder_from` (a trained autoencoder's directory) only its decoder trains, on the frozen
    encoder's latents: the latent space, and so every DiT trained on it, stays valid.
    """
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if decoder_from is None:
        vae = Autoencoder(AutoencoderConfig.preset(preset)).to(device)
    else:
        vae = load_vae(decoder_from, device).train()
        vae.encoder.requires_grad_(False)
    loss_fn = AutoencoderLoss().to(device)
    params = vae.parameters() if decoder_from is None else vae.decoder.parameters()
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
        ),
    )
    step = 0
    state = load_checkpoint(out / CHECKPOINT)
    if state is not None:
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step = int(state["step"])
        trim_log(out, step)
        log(f"resumed from step {step}")
    progress = Progress(steps, step)
    while step < steps:
        x = vae_batch(seed, step, batch, 64).to(device)
        with torch.set_grad_enabled(decoder_from is None):
            dist = vae.encode_distribution(x)
        recon = vae.decoder(dist.sample(torch.Generator().manual_seed(seed * 7919 + step)))
        terms = loss_fn(recon, x, dist)
        optimizer_step(terms.total, vae, opt, sched)
        step += 1
        _log(out, {"step": step, "loss": terms.total.item(), "l1": terms.l1.item()})
        if step % 50 == 0:
            log(progress.line(step, terms.total.item()))
        if step % checkpoint_every == 0 or step == steps:
            save_checkpoint(
                out / CHECKPOINT,
                {
                    "model": vae.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "step": step,
                },
            )
        if stop_after is not None and step >= stop_after:
            return vae
    export_vae(vae, out, refit=decoder_from is None)
    return vae


def export_vae(vae: Autoencoder, out: Path, refit: bool = True) -> None:
    """Fit the latent scaling factor on fresh scenes (unit variance for the DiT) and write the weights.

    `refit=False` keeps the config's factors (a decoder fine-tune must not move the DiT's latent space).
    """
    from seed_core.weights import save_safetensors

    if refit:
        with torch.no_grad():
            x = vae_batch(12345, 0, 64, 64).to(next(vae.parameters()).device)
            z = vae.encode_distribution(x).mean
        vae.cfg = vae.cfg.replace(scaling_factor=float(1.0 / z.std()), shift_factor=float(z.mean()))
    save_safetensors(vae.state_dict(), out / "vae.safetensors", force=True)
    vae.cfg.to_json(out / "vae.json")


def install_vae(vae_dir: Path, model_dir: Path) -> None:
    """Write the autoencoder of `vae_dir` (fp16) into the model directory `model_dir`, whose DiT was trained
    on the same latent space: the configs must agree (a decoder fine-tune keeps them), else ValueError."""
    from seed_core.weights import save_safetensors

    vae = load_vae(vae_dir)
    config_path = model_dir / "config.json"
    if not config_path.exists():
        raise ValueError(f"{model_dir}: no config.json; not a model directory")
    recorded = json.loads(config_path.read_text()).get("vae")
    if recorded is None:
        raise ValueError(f"{config_path}: no 'vae' entry; not a seedream-mini model directory")
    shipped = AutoencoderConfig.from_dict(recorded)
    if shipped != vae.cfg:
        raise ValueError(
            f"{vae_dir}: its autoencoder config differs from {config_path}'s ({vae.cfg} against {shipped}); "
            "only a decoder fine-tune of the model's own autoencoder (--decoder-from) can replace it"
        )
    save_safetensors(vae.state_dict(), model_dir / "vae.safetensors", dtype="float16", force=True)


def _has_autoencoder(directory: Path) -> bool:
    return (directory / "vae.json").is_file() or (directory / "config.json").is_file()


def load_vae(directory: Path, device: str = "cpu") -> Autoencoder:
    """The autoencoder of a VAE run (vae.json) or of an exported model directory (config.json["vae"])."""
    from seed_core.weights import load_model

    if (directory / "vae.json").exists():
        cfg = AutoencoderConfig.from_json(directory / "vae.json")
    else:
        cfg = AutoencoderConfig.from_dict(json.loads((directory / "config.json").read_text())["vae"])
    return load_model(
        lambda: Autoencoder(cfg), directory / "vae.safetensors", dtype="float32", device=device
    ).eval()


# --- stage 2: seedream-mini -----------------------------------------------------------------------------


# Seedream trains on mixed resolutions; ours: (side in pixels, share of steps). A step keeps the number of
# image tokens of a 64 px batch, so a 256 px step has 1/16 of the batch and costs about the same.
RESOLUTIONS: tuple[tuple[int, float], ...] = ((64, 0.85), (128, 0.1), (256, 0.05))
BASE_SIZE = 64
SAMPLING_SHIFT = 3.0


@dataclass
class DitBatch:
    target: torch.Tensor  # (B, 3, S, S) pixels in [-1, 1]
    prompts: list[str]
    references: list[torch.Tensor]  # each (B, 3, S, S)
    task: str
    ids: torch.Tensor  # (B, L) long prompt ids on the CPU (0 = padding)
    words: WordIndex  # what the word loss indexes with

    @property
    def size(self) -> int:
        return int(self.target.shape[-1])


def parse_resolutions(text: str) -> tuple[tuple[int, float], ...]:
    """ "64:0.85,128:0.1,256:0.05" -> ((64, 0.85), ...); the shares must sum to 1."""
    try:
        pairs = tuple((int(a), float(b)) for a, b in (item.split(":") for item in text.split(",")))
    except ValueError:
        raise ValueError(
            f"--resolutions {text!r}: expected SIZE:SHARE,... such as 64:0.85,128:0.1,256:0.05"
        ) from None
    if any(size % 16 or size < 16 for size, _ in pairs) or abs(sum(s for _, s in pairs) - 1) > 1e-6:
        raise ValueError(f"--resolutions {text!r}: sizes must be multiples of 16 and shares must sum to 1")
    return pairs


@dataclass(frozen=True)
class DitScenes:
    """The scenes and prompts of one step, before rendering: plain Python, so worker processes can draw
    them ahead of the training loop."""

    size: int
    task: str
    targets: list[world.Scene]
    prompts: list[str]
    references: list[list[world.Scene]]  # per reference slot, one scene per batch item


def dit_scenes(
    seed: int,
    step: int,
    batch: int,
    size: int | None = None,
    drop_text: float = 0.1,
    resolutions: tuple[tuple[int, float], ...] = ((BASE_SIZE, 1.0),),
) -> DitScenes:
    """One task and one resolution per step (the batch shares its number of references and its size).

    The size is drawn from `resolutions` (unless `size` is given) and the batch shrinks with the square of
    the side. At the base size: 70% text-to-image, 20% edit (an equal share of each operation), 10%
    composition; larger sizes are text-to-image only (their references would multiply the cost).
    Captions are dropped with probability `drop_text` for classifier-free guidance."""
    rng = batch_rng(seed, step)
    if size is None:
        size = rng.choices([s for s, _ in resolutions], weights=[w for _, w in resolutions])[0]
    batch = max(1, batch * BASE_SIZE**2 // size**2)
    draw = rng.random() if size <= BASE_SIZE else 0.0
    targets: list[world.Scene] = []
    prompts: list[str] = []
    refs: list[list[world.Scene]] = []
    if draw < 0.7:
        task = "generate"
        for _ in range(batch):
            scene = world.sample_counting_scene(rng) if rng.random() < 0.15 else world.sample_scene(rng)
            targets.append(scene)
            prompts.append(world.caption(scene, rng))
    elif draw < 0.9:
        task = "edit"
        while len(targets) < batch:
            # the operation first, then scenes until it applies: an equal share of each, as the suite
            # has (drawing a scene and skipping an edit that does not fit left moves at 6% of edits)
            op, edit = rng.choice(world.EDIT_OPS), None
            while edit is None:
                edit = world.make_edit(world.sample_scene(rng), rng, op)
            targets.append(edit.target)
            prompts.append(edit.instruction)
            refs.append([edit.source])
    else:
        task = "compose"
        for _ in range(batch):
            comp = world.make_composition(rng)
            targets.append(comp.target)
            prompts.append(comp.instruction)
            refs.append(list(comp.references))
    prompts = ["" if rng.random() < drop_text else p for p in prompts]
    n_refs = len(refs[0]) if refs else 0
    return DitScenes(size, task, targets, prompts, [[r[i] for r in refs] for i in range(n_refs)])


@dataclass(frozen=True)
class WordIndex:
    """Where the real words of a batch's ids are and which of the batch's distinct words each one is: the
    word loss's indexing, computed on the CPU where the batch is drawn (no device sync, and no
    data-dependent shapes in the training loop)."""

    positions: torch.Tensor  # (T,) long, into the flattened (B * L) ids, row by row
    targets: torch.Tensor  # (T,) long, into `words`
    words: torch.Tensor  # (W,) long, the batch's distinct word ids, sorted


def word_index(ids: torch.Tensor) -> WordIndex:
    """The `WordIndex` of ids (B, L) (0 = padding)."""
    flat = ids.flatten()
    positions = flat.nonzero().squeeze(1)
    words, targets = torch.unique(flat[positions], sorted=True, return_inverse=True)
    return WordIndex(positions, targets, words)


@dataclass(frozen=True)
class PackedBatch:
    """A step's scenes as CPU tensors and its prompts as ids: what a worker process sends, so the training
    loop does no per-object or per-word Python work (at batch 4096 that work outlasted a GPU step)."""

    size: int
    task: str
    prompts: list[str]
    target: world.PackedScenes
    references: list[world.PackedScenes]
    ids: torch.Tensor  # (B, L) long
    words: WordIndex


def pack_scenes(scenes: DitScenes) -> PackedBatch:
    ids, _ = TOKENIZER(scenes.prompts)
    references = [world.pack(r) for r in scenes.references]
    target = world.pack(scenes.targets)
    return PackedBatch(scenes.size, scenes.task, scenes.prompts, target, references, ids, word_index(ids))


def draw_packed(seed: int, step: int, batch: int, resolutions: tuple[tuple[int, float], ...]) -> PackedBatch:
    """`dit_scenes` of a step, packed: the job of a worker process."""
    return pack_scenes(dit_scenes(seed, step, batch, resolutions=resolutions))


def render_scenes(scenes: DitScenes | PackedBatch, device: torch.device | str = "cpu") -> DitBatch:
    """Render a step's scenes (on `device`, in one pass per shape kind) into pixels in [-1, 1]."""
    packed = scenes if isinstance(scenes, PackedBatch) else pack_scenes(scenes)
    references = [world.render_packed(r, packed.size, device) * 2 - 1 for r in packed.references]
    target = world.render_packed(packed.target, packed.size, device) * 2 - 1
    return DitBatch(target, packed.prompts, references, packed.task, packed.ids, packed.words)


def dit_batches(
    seed: int,
    start: int,
    batch: int,
    resolutions: tuple[tuple[int, float], ...],
    device: torch.device | str = "cpu",
    workers: int = 0,
) -> Iterator[DitBatch]:
    """The batches of steps start, start + 1, ... With `workers`, that many processes draw the scenes
    ahead of the loop (on a GPU one Python thread cannot keep up); the batches are the same either way."""
    if workers <= 0:
        for step in itertools.count(start):
            yield render_scenes(draw_packed(seed, step, batch, resolutions), device)
        return
    # spawn, not fork: the parent may hold a CUDA context, which a forked child must not inherit
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    draw = functools.partial(draw_packed, seed, batch=batch, resolutions=resolutions)
    try:
        ahead = 4 * workers
        pending = deque(pool.submit(draw, step) for step in range(start, start + ahead))
        for step in itertools.count(start + ahead):
            scenes = pending.popleft().result()
            pending.append(pool.submit(draw, step))
            yield render_scenes(scenes, device)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def parse_decay(text: str) -> int | float:
    """ "1200" -> 1200 steps; "20%" -> 0.2 of the run."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a number of steps or a percentage such as 20%"
        ) from None
    if value < 0 or (isinstance(value, float) and value > 1):
        raise argparse.ArgumentTypeError(f"{text!r}: the decay must be >= 0 steps or at most 100%")
    return value


def learning_rate_factor(step: int, updates: int, steps: int, warmup: int, decay: int) -> float:
    """Warmup-stable-decay: the factor on the learning rate of the update from `step` to `step` + 1, the
    optimizer's `updates`-th."""
    factor = min(1.0, (updates + 1) / warmup) if warmup > 0 else 1.0
    if decay > 0 and step >= steps - decay:
        factor *= (steps - step) / decay
    return factor


def init_from(model_dir: Path, dit: MMDiT, text: MiniTextEncoder, device: torch.device | str) -> int:
    """Load an exported model's DiT and text encoder into `dit` and `text`, on `device`; returns the step
    in its training.json (0 without one). Make the optimizer after this: load_into assigns new tensors."""
    from seed_core.weights import load_into, load_safetensors

    load_into(dit, load_safetensors(model_dir / "dit.safetensors", dtype="float32"), source=str(model_dir))
    file = model_dir / "text_encoder.safetensors"
    load_into(text, load_safetensors(file, dtype="float32"), source=str(model_dir))
    # load_into assigned the file's tensors, which are on the CPU
    dit.to(device)
    text.to(device)
    info = model_dir / "training.json"
    return int(json.loads(info.read_text()).get("step", 0)) if info.exists() else 0


def build_dit(preset: str, latent_channels: int) -> tuple[MMDiT, MiniTextEncoder]:
    cfg = MMDiTConfig.preset(preset, in_channels=latent_channels, max_references=3)
    dit = MMDiT(cfg)  # first: the order of initialisation is part of a seeded run
    text = MiniTextEncoder(
        dim=cfg.text_dim, layers=2, heads=cfg.heads, vocab=TOKENIZER.vocab, max_length=TOKENIZER.max_length
    )
    return dit, text


def word_loss(
    text: MiniTextEncoder, index: WordIndex, tokens: torch.Tensor, tau: float = 0.1
) -> torch.Tensor:
    """Cross-entropy of naming each prompt word (`word_index` of the prompts' ids) from its output token
    (B, L, D), among the batch's words, by cosine similarity to the word embeddings at temperature `tau`.

    Why: trained only through the DiT, the encoder's tokens for "circle", "square" and "hexagon" end up
    close (shape is a small part of the flow loss, colour a large one), so the DiT cannot read the shape
    from them; this keeps every word's token apart in direction.
    """
    # the softmax runs over the batch's words: over all 4096 ids it would cost more
    device = tokens.device
    real, target, words = (world.to_device(x, device) for x in (index.positions, index.targets, index.words))
    out = F.normalize(tokens.flatten(0, 1)[real].float(), dim=-1)  # (T, D)
    emb = F.normalize(text.embed.weight[words].float(), dim=-1)  # (W, D)
    return F.cross_entropy(out @ emb.T / tau, target)


def device_generator(device: torch.device, seed: int) -> torch.Generator | None:
    """A generator on `device` seeded with `seed`, or None where the device has none of its own (the meta
    device, or CUDA faked in a test): the step's noise is then drawn from the device's default one."""
    try:
        return torch.Generator(device).manual_seed(seed)
    except RuntimeError:
        if device.type == "cuda" and torch.cuda.is_available():
            raise  # a real device that has one: never fall back to the global, unseeded generator
        return None


def dit_loss(
    dit: MMDiT,
    text: MiniTextEncoder,
    vae: Autoencoder,
    data: DitBatch,
    generator: torch.Generator,
    precision: str = "bf16",
    words: bool = False,
    pooled_drop: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The flow-matching loss of one step on `data` (rendered on the models' device) and, with `words`,
    the `word_loss` of its prompts (else None); the time steps, the noise, the image-guidance dropout and
    the pooled-vector dropout come from `generator` (a CPU one, so every device draws the same; only the
    noise of a step on an accelerator comes from a generator there, seeded from `generator`).

    `pooled_drop`: the share of samples whose pooled text vector is zeroed (as for the empty prompt), so
    the DiT has to read the prompt from the text tokens; left alone, it took the shape word from the
    pooled vector only, where the words of two objects cannot be told apart."""
    device = data.target.device
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16")
    n = data.target.shape[0]
    with torch.no_grad(), autocast:
        x0 = vae.encode(data.target).float()
        refs = tuple(vae.encode(r).float() for r in data.references)
        if data.task == "edit" and torch.rand((), generator=generator) < 0.1:  # image-guidance dropout
            refs = tuple(torch.zeros_like(r) for r in refs)
    # SD3's resolution shift: sqrt(tokens / base tokens) keeps the per-pixel noise level of 64 px
    t = world.to_device(logit_normal_timesteps(n, shift=data.size / BASE_SIZE, generator=generator), device)
    if device.type == "cpu":
        noise = torch.randn(x0.shape, generator=generator)
    else:  # drawn where it is used: 8M normals a step at batch 4096 cost the host 34 ms, and a copy
        noise = torch.randn(
            x0.shape, generator=device_generator(device, generator.initial_seed()), device=device
        )
    flow = make_flow_batch(x0, t, noise)
    ids = world.to_device(data.ids, device)
    with autocast:
        emb = text.encode_ids(ids, ids != 0)
        task = torch.full((n,), TASKS[data.task], device=device)
        pooled = emb.pooled
        if pooled_drop > 0:
            keep = torch.rand(n, generator=generator) >= pooled_drop
            pooled = pooled * world.to_device(keep, device).to(pooled.dtype)[:, None]
        cond = Conditioning(emb.tokens, emb.mask, pooled, task, references=refs)
        prediction = dit(flow.x_t, flow.t, cond)
    named = None
    if words and any(data.prompts):  # a batch of empty prompts (guidance dropout) names no word
        named = word_loss(text, data.words, emb.tokens)
    return flow_matching_loss(prediction.float(), flow), named


def train_dit(
    out: Path,
    vae_dir: Path,
    *,
    steps: int,
    batch: int = 32,
    lr: float = 3e-4,
    seed: int = 0,
    preset: str = "mini",
    device: str = "cpu",
    checkpoint_every: int = 200,
    export_every: int = 2000,
    ema_decay: float = 0.999,
    log: Callable[[str], None] = print,
    stop_after: int | None = None,
    init: Path | None = None,
    resolutions: tuple[tuple[int, float], ...] = RESOLUTIONS,
    precision: str = "auto",
    warmup: int = 0,
    decay: int | float = 0,
    minutes: float | None = None,
    workers: int = 0,
    word_weight: float = 0.0,
    pooled_drop: float = 0.0,
    freeze_text: bool = False,
    profile: int = 0,
    profile_after: int = 20,
) -> None:
    """Train (or resume) seedream-mini on frozen VAE latents; exports a model directory to `out/model`.

    `precision="bf16"` runs the forward passes under bfloat16 autocast (master weights and the optimizer
    stay float32): 1.4x faster on a CPU with AMX, and the usual choice on a GPU; "auto" (the default)
    takes it where bfloat16 runs natively and float32 elsewhere (`resolve_precision`).

    The learning rate is warmup-stable-decay: it rises linearly over the first `warmup` updates of a fresh
    optimizer (from scratch or `init`; a resumed checkpoint keeps its count), stays at `lr`, and falls
    linearly to zero over the last `decay` steps before `steps` (a float: that share, at most 1, of the
    steps this run makes). With `minutes`, the run ends within that wall time: at each tenth of it, `steps`
    is set to what the measured rate reaches (at most the `steps` given), so a decay still lands on the
    last step. `workers` processes draw the scenes ahead (for a GPU). `word_weight` adds that times
    `word_loss` to the flow loss (logged as "words"); `pooled_drop` is `dit_loss`'s. `freeze_text` trains
    the DiT only: the text encoder stays as it was, and so do the students distilled with it (a student
    is a DiT that reads the teacher's text encoder), so a teacher trained on can ship alone. `profile` steps,
    `profile_after` steps into the run, are profiled into `out/profile.txt`.

    Losses stay on the device until the log is written (every 50 steps and at each checkpoint), so a GPU
    step does not wait for the host."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    if precision == "auto":
        precision = resolve_precision(precision, device)
        log(f"precision {precision} (auto; --precision bf16|fp32 to choose)")
    if not 0.0 <= pooled_drop <= 1.0:
        raise ValueError(f"pooled_drop is a share of the samples, between 0 and 1; got {pooled_drop}")
    if freeze_text and word_weight > 0:
        raise ValueError("the word loss trains the text encoder only: drop it when the encoder is frozen")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vae = load_vae(vae_dir, device)
    dit, text = build_dit(preset, vae.cfg.latent_channels)
    dit, text = dit.to(device), text.to(device)
    step = updates = 0  # updates: of this optimizer (warmup counts them)
    state = load_checkpoint(out / CHECKPOINT)
    if state is None and init is not None:  # continue from an exported model (its optimizer state is gone)
        step = init_from(init, dit, text, device)
        log(f"initialised from {init} (step {step}); the optimizer starts fresh")
    # made after `init`: load_into assigns new parameter tensors, so an optimizer made before would step
    # the replaced ones (the model would never change), and an EMA would average from untrained weights
    text.requires_grad_(not freeze_text)
    params = [*dit.parameters(), *([] if freeze_text else text.parameters())]
    # fused: one kernel for all tensors (4x quicker than foreach on this CPU's 6.3M parameters)
    fused = torch.device(device).type in ("cpu", "cuda")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, betas=(0.9, 0.99), fused=fused)
    ema_dit, ema_text = EMA(dit, ema_decay), EMA(text, ema_decay)
    if state is not None:
        dit.load_state_dict(state["dit"])
        text.load_state_dict(state["text"])
        opt.load_state_dict(state["optimizer"])
        for group in opt.param_groups:  # a checkpoint saved before fused AdamW would switch it off
            group["fused"] = fused
        for param, moments in opt.state.items():  # and fused steps count on the parameter's device
            if isinstance(moments.get("step"), torch.Tensor):
                moments["step"] = moments["step"].to(param.device, torch.float32)
        ema_dit.load_state_dict(state["ema_dit"])
        ema_text.load_state_dict(state["ema_text"])
        step = int(state["step"])
        updates = int(state.get("updates", step))
        ema_dit.updates = ema_text.updates = step
        trim_log(out, step)
        log(f"resumed from step {step}")
    progress, max_steps = Progress(steps, step, None if minutes is None else 60 * minutes), steps

    def decay_steps() -> int:
        return round(decay * (steps - progress.start_step)) if isinstance(decay, float) else decay

    # the rate is timed from 20 steps in (after the start-up and the workers' first batches)
    budget = None if minutes is None else TimeBudget(60 * minutes, max_steps, start=step, warm=20)
    stream = dit_batches(seed, step, batch, resolutions, device, workers)
    profiler = StepProfiler(out / "profile.txt", profile, step + profile_after, device)
    losses: list[tuple[int, torch.Tensor, str, int]] = []

    def write_log() -> float:
        values = torch.stack([loss for _, loss, _, _ in losses]).tolist() if losses else []
        with open(out / "log.jsonl", "a") as fh:  # one sync and one open for the steps since the last write
            for (at, _, task, size), (value, named) in zip(losses, values, strict=True):
                entry = {"step": at, "loss": value, "task": task, "size": size}
                fh.write(json.dumps(entry if math.isnan(named) else {**entry, "words": named}) + "\n")
        losses.clear()
        return values[-1][0] if values else math.nan

    try:
        while step < steps:
            for group in opt.param_groups:
                group["lr"] = lr * learning_rate_factor(step, updates, steps, warmup, decay_steps())
            data = next(stream)  # rendered on the device
            gen = torch.Generator().manual_seed(seed * 7919 + step)
            loss, named = dit_loss(
                dit, text, vae, data, gen, precision, words=word_weight > 0, pooled_drop=pooled_drop
            )
            opt.zero_grad(set_to_none=True)
            (loss if named is None else loss + word_weight * named).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            ema_dit.update(dit)
            if not freeze_text:  # a frozen encoder's average is itself
                ema_text.update(text)
            step, updates = step + 1, updates + 1
            if budget is not None and (planned := budget.plan(step, steps)) != steps:
                steps = progress.total = planned  # once spent, this step is checkpointed and exported
                if budget.spent:
                    log(f"time budget {minutes} min spent at step {step}")
                else:
                    log(f"time budget {minutes} min: {budget.rate:.2f} steps/s, ending at step {steps}")
            named = torch.full_like(loss, math.nan) if named is None else named
            losses.append((step, torch.stack([loss, named]).detach(), data.task, data.size))
            if profiler.after(step) and budget is not None:
                budget.restart_rate(step)  # the profile's overhead is no part of the rate
            if step % 50 == 0:
                log(progress.line(step, write_log()))
            if step % checkpoint_every == 0 or step == steps:
                write_log()
                save_checkpoint(
                    out / CHECKPOINT,
                    {
                        "dit": dit.state_dict(),
                        "text": text.state_dict(),
                        "optimizer": opt.state_dict(),
                        "ema_dit": ema_dit.state_dict(),
                        "ema_text": ema_text.state_dict(),
                        "step": step,
                        "updates": updates,
                    },
                )
            if step % export_every == 0 or step == steps:
                export_model(ema_dit.shadow, ema_text.shadow, vae, out / "model", step)
            if stop_after is not None and step >= stop_after:
                break
    finally:  # the worker processes end with the run, also when it fails
        stream.close()
        profiler.close()
    write_log()


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """`auto` -> "bf16" where bfloat16 matrix products run natively (a CUDA device, a CPU with AVX512-BF16
    or AMX), else "fp32": on an AVX2-only CPU bf16 autocast is emulated, and a training step at batch 256
    took 25x longer than in float32 (session 24, AMD EPYC, 2 cores)."""
    if precision != "auto":
        return precision
    kind = torch.device(device).type
    if kind == "cuda":
        return "bf16"
    if kind == "cpu":
        cpu = torch.cpu
        native = (
            getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
            or getattr(cpu, "_is_amx_tile_supported", lambda: False)()
        )
        return "bf16" if native else "fp32"
    return "fp32"


def export_model(dit: MMDiT, text: MiniTextEncoder, vae: Autoencoder, path: Path, step: int) -> None:
    """Write a self-describing fp16 model directory (config.json + safetensors) for `seed -m PATH`."""
    from seed_core.specs import ModelSpec

    # "seedream" is seed-dit's spec for any Seedream model directory, so the export loads by path
    spec = ModelSpec("seedream", "seedream", ("t2i", "edit", "compose"), lambda s, o: None)
    base_tokens = (BASE_SIZE // vae.factor // dit.cfg.patch_size) ** 2
    config = PipelineConfig(
        default_steps=20,
        # text-to-image at guidance 3, edits at 4: at step 35,019 and 6 seeds, 3 keeps the prompt accuracy
        # of 4 (51.4 / 51.4%) with more varied under-specified prompts ("a shape" entropy 0.79 -> 0.84),
        # while edits at 3 lose 10 points of success (session 32)
        default_guidance=3.0,
        default_edit_guidance=4.0,
        # edits: image guidance 3 over 1.5 gained 5 points of success on a held-out edit suite (session 22)
        default_image_guidance=3.0,
        width=64,
        height=64,
        max_references=3,
        # sampling shift 3 at 64 px, growing as sqrt(tokens) like the training shift: chosen by `seed eval
        # --quick --shift` at step 9,200 (FD 389 against 468 at Flux's 1.6 and 488 at 1.0)
        shift=SAMPLING_SHIFT,
        shift_base_tokens=base_tokens,
        # guidance only below noise level 0.9 (the first 5 of 20 steps unguided, one DiT call each): at
        # step 35,019 and 3 seeds, mean prompt accuracy 49.7 -> 52.4%, FD 122 -> 103, edits 49 -> 52%
        # (session 25, RESULTS)
        guidance_interval=(0.0, 0.9),
    )
    pipeline = SeedreamPipeline(spec, dit, vae, text, config)
    pipeline.save_pretrained(path, dtype="float16", force=True)
    (path / "training.json").write_text(json.dumps({"step": step}) + "\n")
    write_prompts(path / "prompts.txt")


def write_prompts(path: Path, n: int = 2000, seed: int = 0) -> None:
    """Text-to-image captions drawn like the training data's: what `seed distill` trains students on."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        scene = world.sample_counting_scene(rng) if rng.random() < 0.15 else world.sample_scene(rng)
        lines.append(world.caption(scene, rng))
    with atomic_path(path, force=True) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def export_checkpoint(out: Path, vae_dir: Path, path: Path, preset: str = "mini", live: bool = False) -> int:
    """Write the EMA (or, with `live`, the raw) weights of the last DiT checkpoint in `out` as a model
    directory; returns its step."""
    state = load_checkpoint(out / CHECKPOINT)
    if state is None:
        raise FileNotFoundError(f"no {CHECKPOINT} in {out}")
    vae = load_vae(vae_dir)
    dit, text = build_dit(preset, vae.cfg.latent_channels)
    dit.load_state_dict(state["dit" if live else "ema_dit"])
    text.load_state_dict(state["text" if live else "ema_text"])
    export_model(dit.eval(), text.eval(), vae, path, int(state["step"]))
    return int(state["step"])


BUNDLES = {"ema": "seedream-mini-ema.safetensors", "live": "seedream-mini-live.safetensors"}


def bundle_checkpoint(out: Path, to: Path, preset: str = "mini") -> list[Path]:
    """Write the EMA and the live weights of the last DiT checkpoint in `out` as two fp16 files in `to`
    (DiT and text encoder in one file each, the step in the metadata): small enough to come back from a
    machine that returns a few files of limited size. `unbundle` turns one back into a model directory."""
    from seed_core.weights import save_safetensors

    state = load_checkpoint(out / CHECKPOINT)
    if state is None:
        raise FileNotFoundError(f"no {CHECKPOINT} in {out}")
    written = []
    for kind, name in BUNDLES.items():
        prefix = "ema_" if kind == "ema" else ""
        tensors = {f"dit.{k}": v for k, v in state[f"{prefix}dit"].items()}
        tensors |= {f"text_encoder.{k}": v for k, v in state[f"{prefix}text"].items()}
        metadata = {"step": str(int(state["step"])), "weights": kind, "preset": preset}
        written += save_safetensors(tensors, to / name, metadata=metadata, dtype="float16", force=True)
    return written


def unbundle(bundle: Path, vae_dir: Path, to: Path) -> int:
    """A bundle file (see `bundle_checkpoint`) + the autoencoder -> a model directory; returns its step."""
    from safetensors import safe_open

    from seed_core.weights import load_into, load_safetensors

    with safe_open(str(bundle), "pt") as handle:
        metadata = handle.metadata() or {}
    step, preset = int(metadata.get("step", 0)), metadata.get("preset", "mini")
    state = load_safetensors(bundle, dtype="float32")
    vae = load_vae(vae_dir)
    dit, text = build_dit(preset, vae.cfg.latent_channels)
    for module, prefix in ((dit, "dit."), (text, "text_encoder.")):
        part = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        load_into(module, part, source=str(bundle))
    export_model(dit.eval(), text.eval(), vae, to, step)
    return step


def write_dataset(out: Path, count: int, *, size: int = 64, seed: int = 0) -> int:
    """Render `count` scenes with one caption each into an image folder (PNG + metadata.jsonl, the layout
    `seed distill --data` reads): real data for adversarial post-training."""
    from PIL import Image

    from seed_core.files import atomic_write_bytes

    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    lines = []
    for start in range(0, count, 64):
        scenes = [
            world.sample_counting_scene(rng) if rng.random() < 0.15 else world.sample_scene(rng)
            for _ in range(min(64, count - start))
        ]
        images = (world.render_batch(scenes, size) * 255).round().clamp(0, 255).to(torch.uint8)
        for i, (scene, image) in enumerate(zip(scenes, images, strict=True)):
            name = f"{start + i:06d}.png"
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(out / name)
            lines.append(json.dumps({"file_name": name, "text": world.caption(scene, rng)}))
    atomic_write_bytes(out / "metadata.jsonl", ("\n".join(lines) + "\n").encode(), force=True)
    return count


def write_edits(out: Path, count: int, *, size: int = 64, seed: int = 0) -> int:
    """Render `count` edit sources with their instructions into an image folder (PNG + metadata.jsonl,
    the layout `seed distill --edits` reads), every operation in equal share, the scenes drawn as
    `metrics.edit_suite` draws them. Seed 2027 would reproduce that suite's draws; other seeds give other
    draws (in a world this small a few may still coincide with the suite's)."""
    from PIL import Image

    from seed_core.files import atomic_write_bytes

    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    lines = []
    for start in range(0, count, 64):
        edits: list[world.Edit] = []
        while len(edits) < min(64, count - start):
            op = world.EDIT_OPS[(start + len(edits)) % len(world.EDIT_OPS)]
            edit = world.make_edit(world.sample_scene(rng, rng.choice((1, 2, 2, 3))), rng, op)
            if edit is not None:
                edits.append(edit)
        images = (world.render_batch([e.source for e in edits], size) * 255).round().clamp(0, 255)
        for i, (edit, image) in enumerate(zip(edits, images.to(torch.uint8), strict=True)):
            name = f"{start + i:06d}.png"
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(out / name)
            lines.append(json.dumps({"file_name": name, "text": edit.instruction, "op": edit.op}))
    atomic_write_bytes(out / "metadata.jsonl", ("\n".join(lines) + "\n").encode(), force=True)
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m seed_mini.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "stage", choices=("vae", "dit", "export", "bundle", "unbundle", "data", "edits", "install-vae")
    )
    parser.add_argument("--out", type=Path, help="the run directory (every stage but unbundle)")
    parser.add_argument("--vae", type=Path, help="trained autoencoder directory (for the dit stage)")
    parser.add_argument("--steps", type=int, default=0)
    parser.add_argument(
        "--to",
        type=Path,
        help="model directory to write (export stage) or to give the --out autoencoder to (install-vae)",
    )
    parser.add_argument("--init", type=Path, help="start the dit stage from an exported model directory")
    parser.add_argument(
        "--decoder-from",
        type=Path,
        help="vae stage: fine-tune only the decoder of this trained autoencoder (its latents stay)",
    )
    parser.add_argument("--live", action="store_true", help="export the raw weights instead of the EMA")
    parser.add_argument("--bundle", type=Path, help="unbundle stage: the bundle file to turn into --to DIR")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--resolutions",
        default=",".join(f"{s}:{w}" for s, w in RESOLUTIONS),
        help="dit stage: mixed-resolution schedule SIZE:SHARE,... (default %(default)s)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="dit stage autocast. auto: bf16 on a GPU, a CPU with native bf16 (AVX512-BF16, AMX) else fp32",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="dit stage: linear warmup over the first N updates of a fresh optimizer",
    )
    parser.add_argument(
        "--decay",
        type=parse_decay,
        default=0,
        help="dit stage: lower the learning rate linearly to 0 over the last N steps (or N%% of this run's)",
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="dit stage: processes drawing scenes ahead (for a GPU)"
    )
    parser.add_argument(
        "--minutes",
        type=float,
        help="dit stage: end within this wall time (the step count adapts, decay included)",
    )
    parser.add_argument(
        "--word-loss",
        type=float,
        default=0.0,
        help="dit stage: weight of a loss that keeps the text encoder's word tokens apart (e.g. 0.02)",
    )
    parser.add_argument(
        "--pooled-drop",
        type=float,
        default=0.0,
        help="dit stage: share of samples trained without the pooled text vector (e.g. 0.5), so the "
        "DiT reads the words from the text tokens",
    )
    parser.add_argument(
        "--freeze-text",
        action="store_true",
        help="dit stage: train the DiT only; the text encoder (and the students that read it) stay valid",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="dit stage: profile N steps, 20 steps in, into OUT/profile.txt (operators by device, host time)",
    )
    parser.add_argument("--count", type=int, default=512, help="data / edits stage: images to render")
    parser.add_argument("--size", type=int, default=64, help="data / edits stage: image side in pixels")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress under nohup / tee
    torch.set_flush_denormal(
        True
    )  # tiny weights / activations late in training are denormal: 3x slower on CPU
    extra = {k: v for k, v in (("batch", args.batch), ("lr", args.lr)) if v is not None}
    if args.out is None and args.stage != "unbundle":
        parser.error(f"the {args.stage} stage needs --out DIR")
    if args.stage == "data":
        written = write_dataset(args.out, args.count, size=args.size, seed=args.seed)
        print(f"wrote {written} captioned images and metadata.jsonl to {args.out}")
        return 0
    if args.stage == "edits":
        written = write_edits(args.out, args.count, size=args.size, seed=args.seed)
        print(f"wrote {written} edit sources with instructions (metadata.jsonl) to {args.out}")
        return 0
    if args.stage == "install-vae":
        if args.to is None:
            parser.error("the install-vae stage needs --out VAE_RUN and --to MODEL_DIR")
        if not _has_autoencoder(args.out):
            parser.error(f"--out {args.out}: no vae.json or config.json there; not a trained autoencoder")
        try:
            install_vae(args.out, args.to)
        except (ValueError, FileNotFoundError) as exc:
            parser.error(str(exc))
        print(f"wrote the autoencoder of {args.out} into {args.to}")
        return 0
    if args.stage == "bundle":
        if args.to is None:
            parser.error("the bundle stage needs --to DIR")
        args.to.mkdir(parents=True, exist_ok=True)
        for path in bundle_checkpoint(args.out, args.to):
            print(f"wrote {path}")
        return 0
    if args.stage == "unbundle":
        if args.bundle is None or args.vae is None or args.to is None:
            parser.error("the unbundle stage needs --bundle FILE, --vae DIR and --to DIR")
        step = unbundle(args.bundle, args.vae, args.to)
        print(f"wrote the weights of step {step} from {args.bundle} to {args.to}")
        return 0
    if args.stage == "export":
        if args.vae is None or args.to is None:
            parser.error("the export stage needs --vae DIR and --to DIR")
        step = export_checkpoint(args.out, args.vae, args.to, live=args.live)
        print(f"exported the {'live' if args.live else 'EMA'} weights of step {step} to {args.to}")
    elif args.steps <= 0:
        parser.error("give the total number of --steps (a resumed run continues up to it)")
    elif args.stage == "vae":
        if args.decoder_from is not None and not _has_autoencoder(args.decoder_from):
            parser.error(f"--decoder-from {args.decoder_from}: no vae.json or config.json there")
        extra["decoder_from"] = args.decoder_from
        train_vae(args.out, steps=args.steps, seed=args.seed, device=args.device, **extra)
    else:
        if args.vae is None:
            parser.error("the dit stage needs --vae DIR")
        if not 0.0 <= args.pooled_drop <= 1.0:
            parser.error(f"--pooled-drop is a share of the samples, between 0 and 1; got {args.pooled_drop}")
        if args.freeze_text and args.word_loss > 0:
            parser.error("--word-loss trains the text encoder only: drop it with --freeze-text")
        try:
            resolutions = parse_resolutions(args.resolutions)
        except ValueError as exc:
            parser.error(str(exc))
        train_dit(
            args.out,
            args.vae,
            steps=args.steps,
            seed=args.seed,
            device=args.device,
            init=args.init,
            resolutions=resolutions,
            precision=args.precision,
            warmup=args.warmup,
            decay=args.decay,
            minutes=args.minutes,
            workers=args.workers,
            word_weight=args.word_loss,
            pooled_drop=args.pooled_drop,
            freeze_text=args.freeze_text,
            profile=args.profile,
            **extra,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
