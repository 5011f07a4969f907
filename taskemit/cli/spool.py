"""``taskemit spool``: the events an emitter kept on local disk because Redis did not take them."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from ..emit import Emitter
from ..emit.spool import Spool
from ..errors import RedisUnavailable
from ..settings import load_settings

__all__ = ("spool",)


@click.group()
def spool() -> None:
    """Events kept on local disk while Redis was unreachable (this machine, this namespace)."""


@spool.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(as_json: bool) -> None:
    """Where the spool file is, how many events wait in it, and which are parked (and why)."""
    settings = load_settings()
    found = Spool(settings)
    count = found.count() if found.exists() else 0
    parked = found.parked() if found.exists() else []
    if as_json:
        click.echo(
            json.dumps(
                {
                    "path": str(found.path),
                    "events": count,
                    "parked": [{"event_uuid": uuid, "error": error, "parked_at": at} for uuid, error, at in parked],
                }
            )
        )
        return
    click.echo(f"{count} events waiting in {found.path}")
    if parked:
        click.echo(f"{len(parked)} events parked: Redis refused them (`taskemit spool flush --parked` once fixed):")
        for uuid, error, _ in parked:
            click.echo(f"  {uuid}: {error}")


@spool.command("flush")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for Redis.")
@click.option("--parked", is_flag=True, help="Try the parked events again too (after fixing what Redis refused).")
def flush(timeout: float, parked: bool) -> None:
    """Store the spooled events in Redis now (each once, however often it runs)."""
    settings = load_settings()
    found = Spool(settings)
    if parked and found.exists():
        click.echo(f"{found.unpark()} parked events back in line")
    if not found.exists() or not (before := found.count()):
        click.echo(f"the spool {found.path} is empty")
        return

    async def main() -> int:
        async with Emitter([], settings) as emitter:
            return await emitter.flush_spool(timeout)

    try:
        left = asyncio.run(main())
    except RedisUnavailable as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(3)
    click.echo(f"stored {before - left} events from {found.path}; {left} left")
