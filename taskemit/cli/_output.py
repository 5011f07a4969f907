"""What every command's output shares: a console, a time format, exit codes."""

from __future__ import annotations

import datetime as dt

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
    "when",
)


def make_console() -> Console:
    """A rich console; piped or captured output gets a wide one, so ids and errors are not folded."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


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
