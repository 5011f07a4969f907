"""The app the outbox benchmarks run: a Litestar handler that inserts a row and emits about it.

``uvicorn benchmarks.outbox.app:app`` with BENCH_DB_URL (an async SQLAlchemy URL) and
BENCH_VARIANT: "outbox" emits with the request's session (the event is a row in the same
transaction; the app's relay stores it after the commit), "dual" commits the row and then emits
directly (the two writes the outbox replaces). advanced-alchemy's plugin manages the session in
both; no worker runs. The listener records its start time for the latency run.
"""

from __future__ import annotations

import os

from advanced_alchemy.extensions.litestar import EngineConfig, SQLAlchemyAsyncConfig, SQLAlchemyPlugin
from litestar import Litestar, post
from litestar.di import NamedDependency
from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from taskemit import Emitter, listener, worker_settings
from taskemit.litestar import TaskEmitConfig, TaskEmitPlugin
from taskemit.outbox import outbox_table

LATENCY_KEY = "bench:outbox:started"


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str] = mapped_column(String(50))


outbox_table(Base.metadata)


@listener("order_placed", name="bench.order_placed")
async def order_placed(order: int) -> None:
    from benchmarks.outbox.probe import started

    started(order)


@post("/orders", status_code=201)
async def place_order(db_session: NamedDependency[AsyncSession], emitter: NamedDependency[Emitter]) -> None:
    order = Order(item="book")
    db_session.add(order)
    if VARIANT == "outbox":
        emitter.emit("order_placed", order=0, session=db_session)  # committed by the before_send handler
    else:
        await db_session.commit()
        emitter.emit("order_placed", order=0)


VARIANT = os.environ.get("BENCH_VARIANT", "outbox")


def create_app(url: str, variant: str) -> Litestar:
    # SQLite takes one writer at a time: requests queue for its one connection (in its WAL mode,
    # set when the benchmark creates the file) instead of sleeping in SQLite's busy handler
    engine = EngineConfig(pool_size=1, max_overflow=0) if url.startswith("sqlite") else EngineConfig()
    database = SQLAlchemyAsyncConfig(connection_string=url, before_send_handler="autocommit", engine_config=engine)
    config = TaskEmitConfig(listeners=[order_placed], outbox=variant == "outbox")
    return Litestar(route_handlers=[place_order], plugins=[SQLAlchemyPlugin(config=database), TaskEmitPlugin(config)])


app = create_app(os.environ.get("BENCH_DB_URL", "sqlite+aiosqlite:///bench.db"), VARIANT)
WorkerSettings = worker_settings(listeners=[order_placed])
