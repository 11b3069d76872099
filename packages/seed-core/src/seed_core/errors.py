"""Exceptions that Seed raises for a user's mistake or a bad file.

Every error here carries a one-line message that says what is wrong and how to fix it; the CLI prints
that line and exits with `exit_code` instead of showing a traceback. Programming errors (bugs) stay
ordinary Python exceptions.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SeedError(Exception):
    """Base class: a problem the user can fix. `str(error)` is the single line shown to them."""

    exit_code: int = 1


class UsageError(SeedError):
    """A bad argument or option (exit code 2, like a command-line usage error)."""

    exit_code = 2


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean 'x'?' (or a list of the available names) for a name that was not found."""
    options = sorted(set(choices))
    close = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
    if close:
        return " Did you mean " + " or ".join(repr(c) for c in close) + "?"
    if not options:
        return " None is installed."
    shown = ", ".join(options[:12]) + (", and more" if len(options) > 12 else "")
    return f" Available: {shown}."


class UnknownNameError(UsageError, KeyError):
    """A name looked up in a registry does not exist."""

    kind = "name"
    list_command = ""

    def __init__(self, name: str, choices: Iterable[str] = ()) -> None:
        self.name = name
        self.choices = sorted(set(choices))
        hint = did_you_mean(name, self.choices)
        where = f" (see `seed {self.list_command}`)" if self.list_command else ""
        super().__init__(f"Unknown {self.kind} '{name}'.{hint}{where}")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class UnknownModelError(UnknownNameError):
    kind, list_command = "model", "models"


class UnknownSamplerError(UnknownNameError):
    kind, list_command = "sampler", "samplers"


class UnknownAttentionBackendError(UnknownNameError):
    kind, list_command = "attention backend", "attention"


class UnknownAcceleratorError(UnknownNameError):
    kind, list_command = "accelerator", "accelerators"


class UnknownDistillMethodError(UnknownNameError):
    kind, list_command = "distillation method", "distill --list"


class UnknownRewardModelError(UnknownNameError):
    kind, list_command = "reward model", "distill --list"


class UnknownWeightAdapterError(UnknownNameError):
    kind, list_command = "weight adapter", "doctor"


class UnknownPresetError(UnknownNameError):
    kind = "preset"


class DuplicateRegistrationError(SeedError):
    """Two plugins registered the same name (or alias) for the same kind of part."""


class ConfigError(UsageError):
    """A config file or dict does not match its dataclass (unknown key, wrong type)."""


class AcceleratorError(UsageError):
    """An accelerator does not apply to a model, conflicts with another, or got a bad option."""


class InvalidRequestError(UsageError):
    """A generate / edit request has an invalid field (size, steps, guidance, ...)."""


class UnsupportedTaskError(UsageError):
    """The model cannot do the asked task (e.g. `edit` on a text-to-image-only model)."""


class NoModelInstalledError(SeedError):
    """No installed model can serve the request."""


class CheckpointError(SeedError):
    """Base for problems with a weights file."""


class CheckpointNotFoundError(CheckpointError):
    pass


class CorruptCheckpointError(CheckpointError):
    """A weights file cannot be parsed (truncated, corrupted, wrong format, unsafe pickle)."""


class CheckpointMismatchError(CheckpointError):
    """A weights file parses but does not fit the model (missing / unexpected key, wrong shape)."""


class CheckpointFormatError(CheckpointError):
    """A weights file in a format this installation cannot read (e.g. quantized by a missing plugin)."""


class OutputExistsError(SeedError):
    """Refusing to overwrite an existing file without `force`."""


class OutputPathError(SeedError):
    """An output path that cannot be written (a directory, no permission, a file in the way)."""


class ImageMetadataError(SeedError):
    """An image file has no Seed metadata or cannot be read."""


class AttentionInputError(SeedError, ValueError):
    """Tensors given to `attention()` break its shape contract, or the backend cannot take them."""
