"""`seed eval`: run a model (with any accelerators) on the fixed suites and measure it with the analyzer."""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from seed_core.images import from_pil, save_png, to_pil
from seed_core.pipeline import load
from seed_core.registry import get_registry
from seed_core.requests import EditRequest, GenerateRequest
from seed_mini import classifier, metrics, world
from seed_mini.analyzer import analyze

Tick = Callable[[str], None]


def evaluate(
    model: str,
    accelerators: Sequence[str] = (),
    *,
    quick: bool = False,
    steps: int | None = None,
    guidance: float | None = None,
    image_guidance: float | None = None,
    shift: float | None = None,
    sampler: str | None = None,
    draft: bool | None = None,
    guidance_interval: tuple[float, float] | None = None,
    seed: int = 0,
    device: str = "cpu",
    tick: Tick | None = None,
    size: int | None = None,
    images: list[torch.Tensor] | None = None,
    fraction: int = 1,
) -> dict[str, Any]:
    """All metrics for one model + accelerators. `quick` runs a quarter of each suite (for smoke tests).

    With `size` (pixels, square), the text-to-image suites (prompts, diversity, Fréchet distance) run at
    that size and the edit / composition suites are skipped: what sparse attention is judged on. The
    text-to-image outputs are appended to `images` when given (to compare two runs pixel by pixel)."""
    start = time.perf_counter()
    if sampler is not None:
        get_registry().samplers.get(sampler)  # a typo fails before the model loads
    pipeline = load(model, accelerators=list(accelerators), device=device)
    tick = tick or (lambda _: None)
    share = max(fraction, 4 if quick else 1)  # run 1 / share of each suite
    settings = {
        "steps": steps, "guidance": guidance, "image_guidance": image_guidance, "shift": shift,
        "sampler": sampler, "draft": draft, "guidance_interval": guidance_interval,
    }  # fmt: skip

    def run(request: GenerateRequest) -> Any:
        request.steps, request.guidance, request.shift = steps, guidance, shift
        request.sampler, request.draft, request.guidance_interval = sampler, draft, guidance_interval
        if isinstance(request, EditRequest):
            request.image_guidance = image_guidance
        if size is not None and not request.references and request.task != "edit":
            request.width = request.height = size
        return pipeline.run(request).images[0]

    # text-to-image outputs and, for the Fréchet distance, two sets of world scenes that fit the same
    # prompts: the reference, and a second draw whose distance to it is the floor a perfect model reaches
    generated: list[torch.Tensor] = []
    real: tuple[list[world.Scene], list[world.Scene]] = ([], [])
    draws = (random.Random(7), random.Random(8))

    by_category: dict[str, list[bool]] = {}
    for i, case in enumerate(metrics.prompt_suite(24 // share)):
        image = from_pil(run(GenerateRequest(case.prompt, seed=seed + i)))
        generated.append(image)
        for scenes, rng in zip(real, draws, strict=True):
            scenes.append(metrics.scene_for_case(case, rng))
        ok = metrics.score_prompt(case, analyze(image))
        by_category.setdefault(case.category, []).append(ok)
        tick("prompts")
    big = metrics.prompt_suite(8 // share, seed=2029) if size is None else []
    for i, case in enumerate(c for c in big if c.category == "single"):
        image = run(GenerateRequest(case.prompt, seed=seed + i, width=256, height=256))
        by_category.setdefault("single@256", []).append(metrics.score_prompt(case, analyze(image)))
        tick("prompts")

    edit_ok, kept, psnrs = [], [], []
    compose_ok = []
    edits = metrics.edit_suite(42 // share) if size is None else []
    with tempfile.TemporaryDirectory() as tmp:
        for i, edit in enumerate(edits):
            source = save_png(to_pil(world.render(edit.source)), Path(tmp) / f"edit{i}.png")
            image = run(EditRequest(edit.instruction, image=str(source), seed=seed + i))
            analysis = analyze(image)
            edit_ok.append(metrics.edit_success(edit, analysis))
            kept.append(metrics.preservation(edit, analysis))
            psnrs.append(metrics.psnr_outside_edit(edit, from_pil(image)))
            tick("edits")
        for i, comp in enumerate(metrics.composition_suite(16 // share) if size is None else []):
            refs = [
                str(save_png(to_pil(world.render(r)), Path(tmp) / f"ref{i}-{k}.png"))
                for k, r in enumerate(comp.references)
            ]
            image = run(GenerateRequest(comp.instruction, references=refs, seed=seed + i))
            compose_ok.append(metrics.scene_match(comp.target, analyze(image)))
            tick("compositions")

    diversity = {}
    for prompt, n_objects in metrics.DIVERSITY_PROMPTS.items():
        objects = []
        for i in range(48 // share):
            image = from_pil(run(GenerateRequest(prompt, seed=seed + 1000 + i)))
            generated.append(image)
            for scenes, rng in zip(real, draws, strict=True):
                scenes.append(world.sample_scene(rng, n_objects))
            objects += [(d.shape, d.colour) for d in analyze(image).objects[:n_objects]]
            tick("diversity")
        d = metrics.diversity(objects)
        diversity[prompt] = _diversity_entry(d)

    def mean(values: Sequence[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    if images is not None:
        images.extend(generated)
    reference = classifier.features(world.render_batch(real[0]))
    fd = classifier.frechet_distance(classifier.features(torch.stack(generated)), reference)
    fd_floor = classifier.frechet_distance(classifier.features(world.render_batch(real[1])), reference)

    finite = [p for p in psnrs if p != float("inf")]
    return {
        "suite_version": metrics.SUITE_VERSION,
        "diversity_version": metrics.DIVERSITY_VERSION,
        "model": model,
        "accelerators": list(accelerators),
        "settings": {
            **settings,
            "seed": seed,
            "quick": quick,
            "default_steps": pipeline.default_steps,
            "default_guidance": pipeline.default_guidance,
            "default_edit_guidance": getattr(pipeline, "edit_guidance", pipeline.default_guidance),
            "size": size or pipeline.default_size[0],
        },
        "prompt_accuracy": {k: mean(v) for k, v in by_category.items()},
        "prompt_cases": {k: len(v) for k, v in by_category.items()},
        "edit": {
            "success": mean(edit_ok),
            "preservation": mean(kept),
            "psnr_outside_db": mean(finite),
            "cases": len(edit_ok),
            "by_op": metrics.by_operation(edits, edit_ok),
        },
        "compose": {"success": mean(compose_ok), "cases": len(compose_ok)},
        "diversity": diversity,
        "frechet": {"distance": fd, "floor": fd_floor, "samples": len(generated)},
        # case by case (1 right, 0 wrong), in suite order: two runs of the same suite and seeds compare
        # pairwise (`paired`), which is far tighter than comparing their means
        "outcomes": {
            **{k: _bits(v) for k, v in by_category.items()},
            "edit": _bits(edit_ok),
            "compose": _bits(compose_ok),
        },
        "seconds": time.perf_counter() - start,
    }


#: the text-to-image categories whose mean is a model's prompt accuracy (the 256-px check stands apart)
CATEGORIES = ("single", "relation", "counting", "background")
#: base seeds of pooled runs lie this far apart: case i of a suite is sampled at seed + i (the diversity
#: samples at seed + 1000 + i), so base seeds 1 apart would share all but one diversity sample
SEED_STRIDE = 10_000


def _bits(outcomes: Sequence[bool]) -> str:
    return "".join("1" if ok else "0" for ok in outcomes)


def _diversity_entry(d: metrics.Diversity) -> dict[str, Any]:
    return {
        "entropy_ratio": d.entropy_ratio,
        "tv_distance": d.tv_distance,
        "tv_floor": d.tv_floor,
        "samples": d.samples,
        "counts": d.counts,
    }


def _pool_diversity(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One diversity entry from runs at different seeds: measured again on their counts together (more
    samples, a tighter number); runs from before the counts were kept (diversity version 1) are averaged."""
    if all("counts" in d for d in runs):
        pairs = [(k.split(" ", 1), n) for d in runs for k, n in d["counts"].items()]
        return _diversity_entry(
            metrics.diversity((shape, colour) for (shape, colour), n in pairs for _ in range(n))
        )
    return {
        "entropy_ratio": sum(d["entropy_ratio"] for d in runs) / len(runs),
        "tv_distance": sum(d["tv_distance"] for d in runs) / len(runs),
        "samples": sum(d["samples"] for d in runs),
    }


def pool(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One result from runs of the same model and suite at different base seeds (`seed eval --seeds N`):
    accuracies over all their cases, diversity measured on all their samples, the Fréchet distance
    averaged, and `pooled` with the seeds, the mean of the four prompt categories and its binomial
    standard error (one suite has 24 cases a category: about 5 points of error on a mean near 33%, more
    than most differences measured between students)."""
    if not results:
        raise ValueError("nothing to pool")
    if len(results) == 1 and "pooled" in results[0]:
        return results[0]
    versions = {r["suite_version"] for r in results}
    # a result pooled before brings all its seeds
    seeds = [s for r in results for s in r.get("pooled", {}).get("seeds", [r["settings"]["seed"]])]
    if len(versions) > 1:
        raise ValueError(f"runs of different suite versions {sorted(versions)}: pool one version at a time")
    diversity_versions = {r.get("diversity_version", 1) for r in results}
    if len(diversity_versions) > 1:
        raise ValueError(
            f"runs of different diversity versions {sorted(diversity_versions)}: pool one version at a time"
        )
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"two runs with the same seed ({seeds}) are the same samples: pool other seeds")

    def weighted(values: Sequence[float], weights: Sequence[int]) -> float:
        return sum(v * w for v, w in zip(values, weights, strict=True)) / max(sum(weights), 1)

    first = results[0]
    accuracy, cases = {}, {}
    for category in first["prompt_accuracy"]:
        counts = [r["prompt_cases"][category] for r in results]
        accuracy[category] = weighted([r["prompt_accuracy"][category] for r in results], counts)
        cases[category] = sum(counts)
    four = [c for c in CATEGORIES if c in cases]
    variance = sum(accuracy[c] * (1 - accuracy[c]) / cases[c] for c in four if cases[c])
    edit_cases = [r["edit"]["cases"] for r in results]
    compose_cases = [r["compose"]["cases"] for r in results]
    return {
        **first,
        "settings": {**first["settings"], "seed": seeds[0]},
        "prompt_accuracy": accuracy,
        "prompt_cases": cases,
        "edit": {
            **{
                k: weighted([r["edit"][k] for r in results], edit_cases)
                for k in ("success", "preservation", "psnr_outside_db")
            },
            "cases": sum(edit_cases),
            "by_op": {
                op: [sum(r["edit"]["by_op"][op][i] for r in results) for i in (0, 1)]
                for op in first["edit"].get("by_op", {})
            },
        },
        "compose": {
            "success": weighted([r["compose"]["success"] for r in results], compose_cases),
            "cases": sum(compose_cases),
        },
        "diversity": {
            prompt: _pool_diversity([r["diversity"][prompt] for r in results])
            for prompt in first["diversity"]
        },
        "frechet": {
            "distance": sum(r["frechet"]["distance"] for r in results) / len(results),
            "floor": sum(r["frechet"]["floor"] for r in results) / len(results),
            "samples": first["frechet"]["samples"],  # per run: the distance is of each run's samples
        },
        **(
            {"outcomes": {k: "".join(r["outcomes"][k] for r in results) for k in first["outcomes"]}}
            if all("outcomes" in r for r in results)
            else {}
        ),
        "seconds": sum(r["seconds"] for r in results),
        "pooled": {
            "seeds": seeds,
            "prompt_mean": sum(accuracy[c] for c in four) / max(len(four), 1),
            "prompt_mean_se": variance**0.5 / max(len(four), 1),
        },
    }


def total_ticks(quick: bool, size: int | None = None) -> int:
    share = 4 if quick else 1
    if size is not None:
        return 4 * (24 // share) + 2 * (48 // share)
    return 4 * (24 // share) + (8 // share) + 42 // share + 16 // share + 2 * (48 // share)


def paired(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Run `a` against run `b` case by case: the same suite at the same seeds, so each case is one prompt
    and one noise for both, and what differs is the model or its settings. Returns per category the
    cases only `a` / only `b` got right, and the difference of the mean of the four prompt categories
    with its paired standard error (the spread of the per-case differences; two runs that mostly agree
    give a much smaller error than two independent means)."""
    for r, name in ((a, "first"), (b, "second")):
        if "outcomes" not in r:
            raise ValueError(f"the {name} run keeps no case-by-case outcomes (made before they were kept)")
    seeds = [r.get("pooled", {}).get("seeds", [r["settings"]["seed"]]) for r in (a, b)]
    if seeds[0] != seeds[1] or a["suite_version"] != b["suite_version"]:
        raise ValueError(f"runs at seeds {seeds[0]} and {seeds[1]} are not the same cases: pair equal seeds")
    out: dict[str, Any] = {"categories": {}}
    variance, difference, four = 0.0, 0.0, [c for c in CATEGORIES if c in a["outcomes"]]
    for k, x in a["outcomes"].items():
        y = b["outcomes"].get(k, "")
        if len(x) != len(y):
            raise ValueError(f"'{k}': {len(x)} cases against {len(y)}: not the same suite")
        d = [int(p) - int(q) for p, q in zip(x, y, strict=True)]
        out["categories"][k] = {"only_first": d.count(1), "only_second": d.count(-1), "cases": len(d)}
        if k in four and d:
            mean = sum(d) / len(d)
            difference += mean / len(four)
            variance += sum((v - mean) ** 2 for v in d) / max(len(d) - 1, 1) / len(d) / len(four) ** 2
    out["prompt_mean_difference"], out["prompt_mean_difference_se"] = difference, variance**0.5
    return out
