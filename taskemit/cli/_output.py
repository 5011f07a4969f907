"""What every command's human output shares: a console and a time format."""

from __future__ import annotations

import datetime as dt

from rich.console import Console

__all__ = ("make_console", "when")


def make_console() -> Console:
    """A rich console; piped or captured output gets a wide one, so ids and errors are not folded."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def when(epoch: float | None, timespec: str = "seconds") -> str:
    """Local time of an epoch timestamp, or "" for none."""
    return dt.datetime.fromtimestamp(epoch).isoformat(sep=" ", timespec=timespec) if epoch else ""
