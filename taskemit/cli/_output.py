"""What every command's output shares: a console, a time format, exit codes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import click
from rich.console import Console

__all__ = (
    "CHECK_FAILED",
    "NOT_FOUND",
    "REDIS_UNREACHABLE",
    "USAGE",
    "NotFound",
    "full_id",
    "make_console",
    "sparkline",
    "when",
)


def make_console() -> Console:
    """A rich console; piped or captured output gets one as wide as its lines (up to 1,000
    characters), so ids and errors are not folded."""
    console = Console()
    return console if console.is_terminal else Console(width=1000)


def when(epoch: float | None, timespec: str = "seconds") -> str:
    """Local time of an epoch timestamp, or "" for none."""
    return dt.datetime.fromtimestamp(epoch).isoformat(sep=" ", timespec=timespec) if epoch else ""


#: exit codes of the taskemit command (see ``taskemit --help``)
CHECK_FAILED = 1
USAGE = 2
REDIS_UNREACHABLE = 3
NOT_FOUND = 4


class NotFound(click.ClickException):
    """What the command was asked about does not exist (exit code 4)."""

    exit_code = NOT_FOUND


def full_id(ident: str) -> str:
    """The full event uuid or job id an abbreviated ``ident`` (8+ characters) stands for."""
    import asyncio

    from ..monitor.ids import AmbiguousId, resolve_id
    from ..settings import load_settings
    from ..store.connection import redis_client

    settings = load_settings()

    async def main() -> str:
        async with redis_client(settings) as redis:
            return await resolve_id(redis, settings, ident)

    try:
        return asyncio.run(main())
    except AmbiguousId as exc:
        raise click.UsageError(str(exc)) from None


_BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None], width: int = 60) -> str:
    """``values`` as a line of block characters scaled from 0 to their largest (a blank where None);
    more values than ``width`` are grouped by their largest, so a spike shows."""
    if len(values) > width:
        size = -(-len(values) // width)
        groups = [values[i : i + size] for i in range(0, len(values), size)]
        values = [max((v for v in group if v is not None), default=None) for group in groups]
    top = max((v for v in values if v is not None), default=0.0)
    line = []
    for value in values:
        if value is None:
            line.append(" ")
        elif top <= 0 or value <= 0:
            line.append(_BLOCKS[0])
        else:
            line.append(_BLOCKS[min(len(_BLOCKS) - 1, int(value / top * (len(_BLOCKS) - 1) + 0.5))])
    return "".join(line)
