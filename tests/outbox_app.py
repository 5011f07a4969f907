"""What the outbox tests share: an app's model (users) beside taskemit's outbox table, a listener
that records each run in the test's Redis, and ``Database``: one URL's engine with sessions
that work the same way whether the driver is sync or async."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy import Integer, String, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from taskemit import listener
from taskemit.outbox import outbox_table
from taskemit.outbox.database import engine_for_url


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(100))


OUTBOX = outbox_table(Base.metadata)
#: where the listener records its runs (in the test's Redis, so that child processes can write it)
RUNS = "runs:outbox"


@listener("user_created", name="outbox.welcome")
async def welcome(email: str) -> None:
    from children import push

    await push(RUNS, email)


class Database:
    """An app's database: ``await db.transaction(work, commit=...)`` runs ``work(session)`` in a
    session (on a thread for a sync driver, as Litestar runs sync handlers) and commits or rolls back."""

    def __init__(self, url: str, **options: Any) -> None:
        self.url = url
        self.engine = engine_for_url(url, **options)
        self.is_async = isinstance(self.engine, AsyncEngine)

    async def create_tables(self, outbox: bool = True) -> None:
        tables = list(Base.metadata.tables.values()) if outbox else [User.__table__]
        await self.run(lambda conn: Base.metadata.create_all(conn, tables=tables))

    async def run(self, fn: Callable[[Any], Any]) -> Any:
        if isinstance(self.engine, AsyncEngine):
            async with self.engine.begin() as conn:
                return await conn.run_sync(fn)
        engine = self.engine

        def sync() -> Any:
            with engine.begin() as conn:
                return fn(conn)

        return await asyncio.to_thread(sync)

    async def transaction(self, work: Callable[[Any], None], *, commit: bool = True, io: bool = False) -> None:
        """``io``: ``work`` does I/O through the session (an AsyncSession's then runs in ``run_sync``)."""
        if isinstance(self.engine, AsyncEngine):
            async with AsyncSession(self.engine) as session:
                if io:
                    await session.run_sync(lambda _: work(session))
                else:
                    work(session)
                await (session.commit() if commit else session.rollback())
            return
        engine = self.engine

        def sync() -> None:
            with Session(engine) as session:
                work(session)
                session.commit() if commit else session.rollback()

        await asyncio.to_thread(sync)

    async def outbox_rows(self) -> int:
        return int(await self.run(lambda conn: conn.execute(select(func.count()).select_from(OUTBOX)).scalar_one()))

    async def users(self) -> list[str]:
        return sorted(await self.run(lambda conn: [row[0] for row in conn.execute(select(User.email))]))

    async def execute(self, sql: str, **params: Any) -> None:
        await self.run(lambda conn: conn.execute(text(sql), params))

    async def dispose(self) -> None:
        if isinstance(self.engine, AsyncEngine):
            await self.engine.dispose()
        else:
            self.engine.dispose()


def add_user(emitter: Any, email: str, **emit: Any) -> Callable[[Any], None]:
    """A handler's work: insert a user and emit ``user_created`` with the session."""

    def work(session: Any) -> None:
        session.add(User(email=email))
        emitter.emit("user_created", email=email, session=session, **emit)

    return work
