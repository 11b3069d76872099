"""The progress bar every command shows while it works."""

from __future__ import annotations

from typing import Any


def progress_bar(*columns: Any, console: Any = None, disable: bool = False) -> Any:
    """A transient rich `Progress` on stderr (stdout stays for results). Off when stderr is not a terminal:
    there rich shows nothing and would leave a blank line before the next message (an error, a log)."""
    from rich.console import Console
    from rich.progress import Progress

    console = console or Console(stderr=True)
    return Progress(*columns, console=console, transient=True, disable=disable or not console.is_terminal)
