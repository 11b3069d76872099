"""Request and result types for generation and editing.

Requests are plain dataclasses that check themselves (`validate()`), so the CLI, the Python API and a
server all refuse the same bad input with the same one-line message. A result carries the request and
everything needed to reproduce it; `metadata()` is what gets embedded in the output file.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seed_core.errors import InvalidRequestError, UsageError

MAX_SIDE = 8192


@dataclass
class GenerateRequest:
    """Text to image. `width` / `height` are in pixels; None takes the model's default."""

    prompt: str
    negative_prompt: str = ""
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    num_images: int = 1
    sampler: str | None = None
    shift: float | None = None  # None: the model's resolution-aware shift
    references: list[str] = field(default_factory=list)  # paths of reference images
    # draw a small draft, upscale it and refine it at full size (models with a draft size, above it);
    # None: the model's default, False: sample at full size from the noise
    draft: bool | None = None
    # classifier-free guidance only while the noise level t (1 = noise, 0 = image) lies in [low, high];
    # outside it the conditional prediction alone (one model call, not one per branch). None: the model's
    guidance_interval: tuple[float, float] | None = None

    task = "t2i"

    def validate(self) -> None:
        if not self.prompt.strip() and not self.references:
            what = "video" if self.task == "t2v" else "image"
            raise InvalidRequestError(f"the prompt is empty; describe the {what} to generate")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and not 8 <= value <= MAX_SIDE:
                raise InvalidRequestError(f"{name} must be between 8 and {MAX_SIDE} pixels, got {value}")
        if self.steps is not None and not 1 <= self.steps <= 1000:
            raise InvalidRequestError(f"steps must be between 1 and 1000, got {self.steps}")
        if self.guidance is not None and not (math.isfinite(self.guidance) and 0 <= self.guidance <= 100):
            raise InvalidRequestError(f"guidance must be between 0 and 100, got {self.guidance}")
        if not 1 <= self.num_images <= 64:
            raise InvalidRequestError(f"num_images must be between 1 and 64, got {self.num_images}")
        if self.shift is not None and not (math.isfinite(self.shift) and 0.01 <= self.shift <= 100):
            raise InvalidRequestError(f"shift must be between 0.01 and 100, got {self.shift}")
        span = self.guidance_interval
        if span is not None and not (len(span) == 2 and 0 <= span[0] < span[1] <= 1):
            shown = ",".join(str(v) for v in span)
            raise InvalidRequestError(
                f"guidance interval must be LOW,HIGH with 0 <= LOW < HIGH <= 1, got {shown}"
            )
        if not 0 <= self.seed < 2**63:
            raise InvalidRequestError(f"seed must be between 0 and 2**63 - 1, got {self.seed}")
        for ref in self.references:
            _image_file(ref, "reference image")

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, **dataclasses.asdict(self)}


def _image_file(path: str, what: str) -> None:
    if Path(path).is_dir():
        raise InvalidRequestError(f"{what} {path} is a folder; give an image file")
    if not Path(path).is_file():
        raise InvalidRequestError(f"{what} {path} does not exist")


@dataclass
class EditRequest(GenerateRequest):
    """Instruction editing of `image` (SeedEdit): `prompt` is the instruction.

    `image_guidance` weighs faithfulness to the source image against the instruction (dual CFG).
    """

    image: str = ""
    image_guidance: float | None = None

    task = "edit"

    def validate(self) -> None:
        if not self.image:
            raise InvalidRequestError("an edit needs a source image")
        _image_file(self.image, "source image")
        if not self.prompt.strip():
            raise InvalidRequestError("the instruction is empty; say what to change")
        if self.image_guidance is not None and not (
            math.isfinite(self.image_guidance) and 0 <= self.image_guidance <= 100
        ):
            raise InvalidRequestError(f"image_guidance must be between 0 and 100, got {self.image_guidance}")
        super().validate()


@dataclass
class VideoRequest(GenerateRequest):
    """Text to video. `frames` and `fps` None take the model's defaults."""

    frames: int | None = None
    fps: float | None = None

    task = "t2v"

    def validate(self) -> None:
        super().validate()
        if self.frames is not None and not 1 <= self.frames <= 1000:
            raise InvalidRequestError(f"frames must be between 1 and 1000, got {self.frames}")
        if self.fps is not None and not (math.isfinite(self.fps) and 0 < self.fps <= 240):
            raise InvalidRequestError(f"fps must be in (0, 240], got {self.fps}")


@dataclass
class AppliedAccelerator:
    name: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.name}:{opts}" if opts else self.name


@dataclass
class GenerationResult:
    """Images (PIL) with what produced them. `seeds[i]` reproduces `images[i]` with num_images=1. A video
    request fills `videos` instead: each (frames, height, width, 3) uint8."""

    images: list[Any]
    request: GenerateRequest
    model: str
    accelerators: list[AppliedAccelerator] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # resolved steps, size, sampler, shift, ...
    seconds: float = 0.0
    videos: list[Any] = field(default_factory=list)

    def metadata(self, index: int = 0) -> dict[str, Any]:
        from seed_core.versions import versions

        return {
            "request": self.request.to_dict(),
            "model": self.model,
            "accelerators": [dataclasses.asdict(a) for a in self.accelerators],
            "settings": self.settings,
            "seed": self.seeds[index] if index < len(self.seeds) else self.request.seed,
            "index": index,
            "seconds": round(self.seconds, 3),
            "versions": versions(),
        }


def parse_size(text: str, option: str = "--size") -> tuple[int, int]:
    """`512x768` (width x height) or `512` (a square) -> (width, height); one line naming `option` if not."""
    try:
        values = [int(p) for p in text.lower().replace("*", "x").split("x")]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) <= 0:
        raise UsageError(
            f"{option} {text!r}: expected WIDTHxHEIGHT (e.g. 512x768) or one number, all positive"
        )
    return values[0], values[-1]


def parse_interval(text: str, option: str = "--guidance-interval") -> tuple[float, float]:
    """`0,0.9` -> (0.0, 0.9): a guidance interval of noise levels; one line naming `option` if not."""
    try:
        values = [float(p) for p in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 2 or not 0 <= values[0] < values[1] <= 1:
        raise UsageError(f"{option} {text!r}: expected LOW,HIGH with 0 <= LOW < HIGH <= 1 (e.g. 0,0.9)")
    return values[0], values[1]
