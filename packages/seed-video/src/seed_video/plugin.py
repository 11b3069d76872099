"""seed-video's parts: the SeedVR2 models and `seed restore`. No torch at import: `seed --help` imports
this module."""

# No `from __future__ import annotations`: typer reads the command's annotations at run time.
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

from seed_core import hookimpl
from seed_core.specs import LoadOptions, ModelSpec


def _meta(preset: str) -> Callable[[], Mapping[str, Any]]:
    def meta() -> Mapping[str, Any]:
        from seed_core.weights import build_on_meta
        from seed_vae.video import CausalVideoVAE, VideoVAEConfig
        from seed_video.config import NaDiTConfig
        from seed_video.nadit import NaDiT

        return {
            "dit": build_on_meta(lambda: NaDiT(NaDiTConfig.preset(preset))),
            "vae": build_on_meta(lambda: CausalVideoVAE(VideoVAEConfig.preset("seedvr2"))),
        }

    return meta


def _details(preset: str) -> Callable[[], Mapping[str, Any]]:
    def details() -> Mapping[str, Any]:
        from seed_core.weights import human_count

        parts = _meta(preset)()
        return {
            name: human_count(sum(p.numel() for p in m.state_dict().values())) for name, m in parts.items()
        }

    return details


def _build(spec: ModelSpec, options: LoadOptions) -> Any:
    from seed_core.errors import NoModelInstalledError

    if not options.weights:
        raise NoModelInstalledError(
            f"'{spec.name}' ships no weights: give the folder of the official files with --weights DIR "
            "(seedvr2_ema_*.pth, ema_vae.pth, pos_emb.pt), one DiT file of it with --weights FILE, "
            "or a converted model with -m DIR"
        )
    from seed_video.pipeline import SeedVR2Pipeline

    if (Path(options.weights) / "config.json").is_file():  # a converted model directory
        return SeedVR2Pipeline.from_pretrained(spec, options.weights, options)
    return SeedVR2Pipeline.from_official(spec, options.weights, spec.name.removeprefix("seedvr2-"), options)


def _build_random(spec: ModelSpec, options: LoadOptions) -> Any:
    from seed_video.pipeline import SeedVR2Pipeline, random_pipeline

    if options.weights:
        return SeedVR2Pipeline.from_pretrained(spec, options.weights, options)
    return random_pipeline(spec, options)


@hookimpl
def seed_register_models(register: Callable[[ModelSpec], None]) -> None:
    for preset in ("3b", "7b"):
        register(
            ModelSpec(
                f"seedvr2-{preset}",
                "seedvr2",
                ("restore",),
                _build,
                description=f"SeedVR2-{preset.upper()} one-step video restoration (official layout; -m DIR)",
                details=_details(preset),
                meta=_meta(preset),
            )
        )
    register(
        ModelSpec(
            "seedvr2-tiny-random",
            "seedvr2",
            ("restore",),
            _build_random,
            description="SeedVR2 architecture, tiny preset, random weights: exercises `seed restore`",
        )
    )


@hookimpl
def seed_register_commands(app: Any) -> None:
    import typer

    @app.command("restore")
    def restore_command(
        source: Annotated[Path, typer.Argument(help="An image, or a folder of frames (PNG / JPEG).")],
        model: Annotated[str, typer.Option("--model", "-m", help="SeedVR2 model name or directory.")],
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="An image file, or a folder for frames.")
        ] = None,
        weights: Annotated[
            Path | None,
            typer.Option(
                help="Folder of the official files (seedvr2_ema_*.pth, ema_vae.pth, pos_emb.pt), or one DiT "
                "file in it to pick a variant (e.g. seedvr2_ema_7b_sharp.pth)."
            ),
        ] = None,
        resolution: Annotated[str, typer.Option(help="Output short side (720) or WIDTHxHEIGHT.")] = "720",
        batch_frames: Annotated[
            int, typer.Option(help="Frames per DiT call, 4n + 1 (2n + 1 for seedvr2-mini).")
        ] = 5,
        overlap: Annotated[int, typer.Option(help="Frames shared by neighbouring batches (crossfaded).")] = 0,
        color_fix: Annotated[str, typer.Option(help="wavelet, adain or none.")] = "wavelet",
        tile: Annotated[
            int | None, typer.Option(help="VAE tiles of this many latent pixels (saves memory) [none].")
        ] = None,
        tile_overlap: Annotated[
            int | None, typer.Option(help="Latent pixels shared by neighbouring tiles [tile / 4].")
        ] = None,
        vae_chunk: Annotated[
            int | None,
            typer.Option(
                help="Latent frames the VAE encodes / decodes at a time: the same result, and 1 (as the "
                "official code) holds the least memory for long batches; 0: the whole batch at once. "
                "[1 on a GPU for batches of more than 3 latent frames, else 0]"
            ),
        ] = None,
        seed: Annotated[int, typer.Option(help="Noise seed (batch i uses seed + i).")] = 0,
        offload_blocks: Annotated[
            int, typer.Option(help="DiT blocks kept in CPU memory and streamed to the device per call.")
        ] = 0,
        accel: Annotated[
            list[str] | None,
            typer.Option(
                "--accel",
                "-a",
                help="Accelerator, repeatable: NAME or NAME:key=value (e.g. int8). See `seed accelerators`.",
            ),
        ] = None,
        device: Annotated[str, typer.Option(help="torch device.")] = "cpu",
        dtype: Annotated[str, typer.Option(help="float32, float16 or bfloat16.")] = "float32",
        force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite outputs.")] = False,
        max_memory: Annotated[
            float | None,
            typer.Option(
                help="GiB of GPU memory to stay within: chooses --vae-chunk, --offload-blocks and --tile "
                "(only ever saving more than asked) from the memory estimate plus 12% for kernel "
                "workspaces, and says which.",
            ),
        ] = None,
        estimate_memory: Annotated[
            bool,
            typer.Option(
                "--estimate-memory",
                help="Print the peak memory each phase will need on the device with these settings "
                "(counted on fake tensors: no GPU, no weights, seconds), then exit.",
            ),
        ] = False,
    ) -> None:
        """Restore a video (frames) or an image in one DiT step with SeedVR2: upscale to --resolution,
        batches of --batch-frames with --overlap crossfades, colour fix against the input. To fit a small
        GPU: --vae-chunk 1, --tile 64 (or smaller), --offload-blocks; --estimate-memory shows the effect."""
        from rich.console import Console

        from seed_core.console import progress_bar
        from seed_core.errors import UsageError
        from seed_core.pipeline import load, resolve_model
        from seed_video.io import VIDEOS, check_output, read_frames, read_video, write_frames

        if "restore" not in resolve_model(model)[0].tasks:  # before reading anything, --weights included
            raise UsageError(f"model '{model}' does not restore video; use a seedvr2 model (seed models)")
        if output is None and not estimate_memory:
            raise UsageError("give the output with -o / --output (an image file or a folder for frames)")
        if seed < 0:  # as `seed generate` and `seed video`
            raise UsageError(f"--seed must be >= 0, got {seed}")
        if output is not None:
            check_output(output, force)
        fps = 24.0
        if source.suffix.lower() in VIDEOS:
            frames, fps = read_video(source)  # the output keeps the input's frame rate
        else:
            frames = read_frames(source)
        if estimate_memory or max_memory is not None:
            from dataclasses import replace

            from seed_video.memory import estimate_restore
            from seed_video.pipeline import default_vae_chunk

            settings = {"tile": tile, "tile_overlap": tile_overlap, "vae_chunk": vae_chunk}
            dit_cfg, vae_cfg, s = _request(model, weights, frames, resolution, batch_frames, overlap,
                                           color_fix, dtype, offload_blocks, settings)  # fmt: skip
            if vae_chunk is None:  # the estimate is for a GPU: its default
                s = replace(s, vae_chunk=default_vae_chunk(s.frames, vae_cfg.temporal_factor, "cuda"))
            if max_memory is not None:
                s, peaks = _plan(dit_cfg, vae_cfg, s, max_memory)
                tile, tile_overlap, vae_chunk = s.tile, s.tile_overlap, s.vae_chunk
                offload_blocks = s.offload_blocks
            else:
                with Console(stderr=True).status("counting on fake tensors"):
                    peaks = estimate_restore(dit_cfg, vae_cfg, s)
            if estimate_memory:
                _print_estimate(model, s, peaks, device)
                return
        assert output is not None
        where = "cpu" if offload_blocks else device  # offloaded blocks must never all sit on the device
        pipeline = load(
            model,
            accelerators=accel or [],
            device=where,
            dtype=dtype,
            weights=str(weights) if weights else None,
        )
        if not hasattr(pipeline, "restore_frames"):
            raise UsageError(f"model '{model}' does not restore video; use a seedvr2 model (seed models)")
        if offload_blocks:
            pipeline.place(device, offload_blocks)
        with progress_bar() as bar:
            tasks = {name: bar.add_task(name, total=None) for name in ("encode", "dit", "decode")}
            out = pipeline.restore_frames(
                frames,
                resolution=resolution,
                batch_frames=batch_frames,
                overlap=overlap,
                color_fix=color_fix,
                tile=tile,
                tile_overlap=tile_overlap,
                vae_chunk=vae_chunk,
                seed=seed,
                progress=lambda phase, done, total: bar.update(tasks[phase], completed=done, total=total),
            )
        meta = {
            "model": model,
            "task": "restore",
            "source": str(source),
            "fps": fps,
            "settings": {
                "resolution": resolution,
                "batch_frames": batch_frames,
                "overlap": overlap,
                "color_fix": color_fix,
                "tile": tile,
                "tile_overlap": tile_overlap,
                "vae_chunk": vae_chunk,
                "seed": seed,
                "offload_blocks": offload_blocks,
                "dtype": dtype,
            },
            "accelerators": [{"name": a.name, "options": a.options} for a in pipeline.accelerators],
        }
        audio = source if source.suffix.lower() in VIDEOS else None  # its audio is copied over
        write_frames(out, output, meta, force=force, fps=fps, audio_from=audio)
        peaks = ", ".join(f"{k} {v:,.0f} MiB" for k, v in pipeline.peaks.items())
        kind = "GPU memory allocated" if device.startswith("cuda") else "resident memory so far"
        typer.echo(
            f"{output}: {out.shape[0]} frame(s) of {out.shape[3]}x{out.shape[2]}; peak {kind}: {peaks}"
        )

    def _request(
        model: str,
        weights: Path | None,
        frames: Any,
        resolution: str,
        batch_frames: int,
        overlap: int,
        color_fix: str,
        dtype: str,
        offload_blocks: int,
        settings: dict[str, Any],
    ) -> tuple[Any, Any, Any]:
        """(DiT config, VAE config, RestoreSettings of the largest batch) of a restore request, checked,
        without loading any weights."""
        from seed_core.errors import UsageError
        from seed_core.pipeline import load, resolve_model
        from seed_video.memory import RestoreSettings, model_configs
        from seed_video.pipeline import check_settings, output_size

        if dtype not in ("float32", "float16", "bfloat16"):
            raise UsageError(f"--dtype {dtype}: use float32, float16 or bfloat16")
        spec, where = resolve_model(model)
        configs = model_configs(spec, str(weights) if weights else where)
        if configs is None:  # a model known only by building it (the tiny random one)
            pipe = load(model, device="cpu")
            configs = (pipe.dit.cfg, pipe.vae.cfg)
        dit_cfg, vae_cfg = configs
        check_settings(vae_cfg.temporal_factor, batch_frames, overlap, color_fix, **settings)
        if not 0 <= offload_blocks <= dit_cfg.layers:
            raise UsageError(f"--offload-blocks {offload_blocks}: the DiT has {dit_cfg.layers} blocks")
        unit = vae_cfg.factor * dit_cfg.patch[1]  # as SeedVR2Pipeline.unit
        height, width = output_size(frames.shape[2], frames.shape[3], resolution, unit)
        batch = min(batch_frames, frames.shape[0])
        s = RestoreSettings(batch, height, width, dtype, offload_blocks=offload_blocks, **settings)
        return dit_cfg, vae_cfg, s

    def _plan(dit_cfg: Any, vae_cfg: Any, s: Any, max_memory: float) -> tuple[Any, dict[str, float]]:
        """The settings `--max-memory` chooses, said in one line; a budget nothing fits is refused."""
        from rich.console import Console

        from seed_core.errors import UsageError
        from seed_video.memory import PHASES, WORKSPACE_MARGIN, plan_restore

        if max_memory <= 0:
            raise UsageError(f"--max-memory {max_memory}: the GPU memory to stay within, in GiB (e.g. 8)")
        with Console(stderr=True).status("choosing memory settings (counting on fake tensors)"):
            chosen, peaks, fits = plan_restore(dit_cfg, vae_cfg, s, max_memory * 1024)
        mib = max(peaks[name] for name in PHASES) * (1 + WORKSPACE_MARGIN)
        need = f"{mib / 1024:.1f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"
        flags = f"--vae-chunk {chosen.vae_chunk} --offload-blocks {chosen.offload_blocks}"
        flags += f" --tile {chosen.tile}" if chosen.tile else ""
        if not fits:
            raise UsageError(
                f"--max-memory {max_memory:g}: even {flags} needs about {need} for "
                f"{s.frames} frames at {s.width}x{s.height}; lower --batch-frames or --resolution"
            )
        typer.echo(f"--max-memory {max_memory:g}: {flags} (about {need})", err=True)
        return chosen, peaks

    def _print_estimate(model: str, s: Any, peaks: dict[str, float], device: str) -> None:
        import torch
        from rich.console import Console
        from rich.table import Table

        from seed_video.memory import PHASES

        console = Console()
        console.print(f"{model} on a GPU: one batch of {s.frames} frames at {s.width}x{s.height}, {s.dtype}")
        table = Table()
        table.add_column("phase")
        table.add_column("peak MiB", justify="right")
        for name in PHASES:
            table.add_row(name, f"{peaks[name]:,.0f}")
        table.add_row("weights held", f"{peaks['weights']:,.0f}")
        console.print(table)
        worst = max(peaks[name] for name in PHASES)
        line = (
            f"peak {worst / 1024:.1f} GiB: weights and tensors; kernel workspaces come on top "
            "(about 10% more on an H200)"
        )
        if device.startswith("cuda") and torch.cuda.is_available():
            line += f"; this GPU has {torch.cuda.get_device_properties(device).total_memory / 2**30:.1f} GiB"
        console.print(line)

    @app.command("video")
    def video_command(
        prompt: Annotated[str, typer.Argument(help="What the video should show.")],
        model: Annotated[
            str,
            typer.Option("--model", "-m", help="A text-to-video model, e.g. diffusers:PATH (a Wan folder)."),
        ],
        output: Annotated[
            Path | None,
            typer.Option(
                "--output",
                "-o",
                help="A video file (.mp4, .webm, ...) or a folder for PNG frames [seed-video-SEED.mp4].",
            ),
        ] = None,
        frames: Annotated[int | None, typer.Option(help="Frames to make [the model's].")] = None,
        fps: Annotated[
            float | None, typer.Option(help="Frames per second of the file [the model's].")
        ] = None,
        size: Annotated[str | None, typer.Option(help="WIDTHxHEIGHT [the model's].")] = None,
        steps: Annotated[int | None, typer.Option(help="Sampling steps [the model's].")] = None,
        guidance: Annotated[
            float | None, typer.Option("--guidance", "-g", help="CFG scale [the model's].")
        ] = None,
        negative: Annotated[str, typer.Option(help="Negative prompt.")] = "",
        seed: Annotated[int, typer.Option("--seed", "-s", help="Random seed; video i uses seed + i.")] = 0,
        num_videos: Annotated[int, typer.Option("--num-videos", "-n", help="Videos to make.")] = 1,
        accel: Annotated[
            list[str] | None,
            typer.Option("--accel", "-a", help="Accelerator, repeatable: NAME or NAME:key=value."),
        ] = None,
        device: Annotated[str, typer.Option(help="torch device.")] = "cpu",
        dtype: Annotated[str, typer.Option(help="float32, float16 or bfloat16.")] = "float32",
        force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite outputs.")] = False,
    ) -> None:
        """Generate a video from a text prompt with a text-to-video model (and any accelerators); the file
        carries the request, the model and the accelerators as metadata."""
        import torch

        from seed_core.console import progress_bar
        from seed_core.pipeline import load
        from seed_core.requests import VideoRequest, parse_size
        from seed_video.io import check_output, write_frames

        width, height = parse_size(size) if size else (None, None)
        request = VideoRequest(
            prompt, negative_prompt=negative, width=width, height=height, steps=steps, guidance=guidance,
            seed=seed, num_images=num_videos, frames=frames, fps=fps,
        )  # fmt: skip
        request.validate()
        out = output or Path(f"seed-video-{seed}.mp4")
        paths = (
            [out]
            if num_videos == 1
            else [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(num_videos)]
        )
        for path in paths:
            check_output(path, force)
        pipeline = load(model, accelerators=accel or [], device=device, dtype=dtype)
        with progress_bar() as bar:
            task = bar.add_task("video", total=None)
            result = pipeline.run(request, lambda done, total: bar.update(task, completed=done, total=total))
        rate = float(result.settings.get("fps") or fps or 16.0)
        for i, (video, path) in enumerate(zip(result.videos, paths, strict=True)):
            tensor = torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255.0  # (F, 3, H, W)
            write_frames(tensor, path, result.metadata(i), force=force, fps=rate)
            typer.echo(str(path))
