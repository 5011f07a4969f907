"""``taskemit outbox``: the outbox table in the app's database (create it, look at it) and the relay
process that takes its rows to Redis."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from typing import Any

import click

from ..errors import OutboxTableMissing, RedisUnavailable
from ..settings import load_settings
from ._output import USAGE

__all__ = ("outbox",)

database_url_option = click.option(
    "--database-url",
    metavar="URL",
    required=True,
    envvar="TASKEMIT_OUTBOX_DATABASE_URL",
    help="The app's SQLAlchemy URL, async drivers included (sqlite+aiosqlite:///app.db, "
    "postgresql+asyncpg://...) [env: TASKEMIT_OUTBOX_DATABASE_URL].",
)


def _engine(url: str) -> Any:
    try:
        from ..outbox.database import engine_for_url
    except ImportError:
        raise click.ClickException("the outbox needs SQLAlchemy: pip install 'taskemit[sqlalchemy]'") from None
    try:
        return engine_for_url(url)
    except Exception as exc:  # a URL SQLAlchemy cannot use: no driver, a typo
        raise click.BadParameter(str(exc), param_hint="--database-url") from None


async def _dispose(engine: Any) -> None:
    result = engine.dispose()
    if asyncio.iscoroutine(result):
        await result


@click.group()
def outbox() -> None:
    """The transactional outbox: events committed in the app's database, waiting for Redis."""


@outbox.command("create-table")
@database_url_option
def create_table(database_url: str) -> None:
    """Create the outbox table (the outbox_table setting) unless it exists."""
    from ..outbox.database import Database
    from ..outbox.table import outbox_table

    settings = load_settings()
    engine = _engine(database_url)
    table = outbox_table(name=settings.outbox_table)

    async def main() -> str:
        database = Database(engine)
        try:
            await database.run(lambda connection: table.create(connection, checkfirst=True))
            return database.url
        finally:
            await database.close()
            await _dispose(engine)

    where = asyncio.run(main())
    click.echo(f"the outbox table {table.name} is in {where}")


@outbox.command("status")
@database_url_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(database_url: str, as_json: bool) -> None:
    """How many events wait in the outbox table, and how long the oldest has waited."""
    from ..outbox import claims
    from ..outbox.database import Database
    from ..outbox.table import outbox_table

    settings = load_settings()
    engine = _engine(database_url)

    async def main() -> tuple[str, int, int | None]:
        database = Database(engine)
        try:
            await database.check_table(settings.outbox_table)
            backlog, oldest = await database.run(claims.count, outbox_table(name=settings.outbox_table))
            return database.url, backlog, oldest
        finally:
            await database.close()
            await _dispose(engine)

    try:
        where, backlog, oldest = asyncio.run(main())
    except OutboxTableMissing as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(USAGE)
    lag = 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)
    if as_json:
        click.echo(json.dumps({"database": where, "table": settings.outbox_table, "backlog": backlog, "lag": lag}))
        return
    click.echo(f"{backlog} events waiting in {settings.outbox_table} ({where}); the oldest for {lag:.1f}s")


@outbox.command("relay")
@database_url_option
def relay(database_url: str) -> None:
    """Store the outbox table's rows in Redis until stopped (SIGTERM, Ctrl-C).

    Any number may run on one table: PostgreSQL rows are claimed with SELECT ... FOR UPDATE
    SKIP LOCKED, other databases' with leases (outbox_claim_ttl). Needs no listener modules:
    the rows carry the encoded jobs.
    """
    from ..emit import Emitter

    settings = load_settings()
    engine = _engine(database_url)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            async with Emitter([], settings) as emitter:
                (running,) = await emitter.relay_outbox(engine, central=True)
                click.echo(f"relaying the outbox {settings.outbox_table} of {_redacted(engine)} to Redis", err=True)
                await stop.wait()
            return int(running.relayed)
        finally:
            await _dispose(engine)

    try:
        relayed = asyncio.run(main())
    except OutboxTableMissing as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(USAGE)
    except RedisUnavailable as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(3)
    click.echo(f"stopped; {relayed} events relayed")


def _redacted(engine: Any) -> str:
    return str(engine.url.render_as_string(hide_password=True))
