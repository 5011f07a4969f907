"""``Database``: the relay's access to one database, through the app's sync or async engine.

The relay's statements are plain functions of a SQLAlchemy ``Connection`` (``claims.py``).
On an async engine (aiosqlite, asyncpg, psycopg's async mode) they run through
``AsyncConnection.run_sync`` on the event loop; on a sync engine, in one thread of the
relay's own, so a slow database never blocks the loop. ``transaction()`` keeps one
transaction open across awaits (``SKIP LOCKED`` claims hold their row locks while the events
are stored in Redis).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, inspect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..errors import OutboxTableMissing
from .table import COLUMNS

__all__ = ("Database", "Transaction", "engine_for_url")

T = TypeVar("T")


def engine_for_url(url: str, **options: Any) -> Engine | AsyncEngine:
    """An engine for a SQLAlchemy URL: an async one for an async driver (``sqlite+aiosqlite://``)."""
    sync = create_engine(url, **options)
    if not sync.dialect.is_async:
        return sync
    sync.dispose()
    return create_async_engine(url, **options)


class Transaction:
    """One open transaction of a ``Database``: ``await tx.run(fn, *args)`` runs ``fn(connection, *args)``."""

    __slots__ = ("_run",)

    def __init__(self, run: Callable[..., Any]) -> None:
        self._run = run

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        result: T = await self._run(fn, *args)
        return result


class Database:
    """The engine of one database, sync or async, as the relay uses it."""

    __slots__ = ("_thread", "async_engine", "engine")

    def __init__(self, bind: Engine | AsyncEngine | Connection | AsyncConnection) -> None:
        if isinstance(bind, AsyncConnection | Connection):
            bind = bind.engine
        self.async_engine: AsyncEngine | None
        if isinstance(bind, AsyncEngine):
            self.async_engine, self.engine = bind, bind.sync_engine
        elif bind.dialect.is_async:  # an AsyncSession's sync Session is bound to the sync face of an AsyncEngine
            self.async_engine, self.engine = AsyncEngine(bind), bind
        else:
            self.async_engine, self.engine = None, bind
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None

    @property
    def url(self) -> str:
        """The database URL without its password (for messages and reports)."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def _call(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._thread is None:
            self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="taskemit-outbox")
        return asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` in a transaction of its own, committed when it returns."""
        async with self.transaction() as tx:
            return await tx.run(fn, *args)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A transaction that stays open across awaits: committed on leaving, rolled back on an error."""
        if self.async_engine is not None:
            async with self.async_engine.begin() as async_connection:
                yield Transaction(async_connection.run_sync)
            return
        connection: Connection = await self._call(self.engine.connect)
        try:
            await self._call(connection.begin)

            def run(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
                return self._call(fn, connection, *args)

            yield Transaction(run)
            await self._call(connection.commit)
        finally:
            await self._call(connection.close)  # rolls back what was not committed

    async def check_table(self, name: str) -> None:
        """Raise OutboxTableMissing unless the table ``name`` is there with the outbox's columns."""
        columns = await self.run(_columns, name)
        if columns is None or not set(COLUMNS) <= columns:
            raise OutboxTableMissing(name, self.url)

    async def dispose(self) -> None:
        """Close the engine's pooled connections (the engine stays usable: it opens new ones)."""
        if self.async_engine is not None:
            await self.async_engine.dispose()
        else:
            await asyncio.get_running_loop().run_in_executor(None, self.engine.dispose)

    async def close(self) -> None:
        """Stop the relay's thread (the engine is the app's: it stays open)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.shutdown)


def _columns(connection: Connection, name: str) -> set[str] | None:
    inspector = inspect(connection)
    if not inspector.has_table(name):
        return None
    return {column["name"] for column in inspector.get_columns(name)}
