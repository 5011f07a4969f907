"""Emitting in the app's database transaction, in process: the outbox (a row in the session's
transaction, relayed once committed) and after-commit emits, on SQLite and PostgreSQL with sync
and async drivers, against a real Redis and a real worker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from conftest import DATABASES
from outbox_app import OUTBOX, RUNS, Database, User, add_user, welcome
from redis import asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from taskemit import Emitter, InvalidArgument, OutboxTableMissing
from taskemit.emit.durable import encode_pending
from taskemit.monitor.outbox import relay_reports
from taskemit.settings import Settings
from taskemit.store.redis_server import RedisServer


@pytest.fixture(params=DATABASES)
async def db(request: pytest.FixtureRequest, new_database: Callable[[str], str]) -> AsyncIterator[Database]:
    database = Database(new_database(request.param))
    await database.create_tables()
    yield database
    await database.dispose()


@pytest.fixture
def settings(taskemit_settings: Settings, point_env_at: Callable[..., None]) -> Settings:
    point_env_at(taskemit_settings)  # the listener records its runs in the test's Redis
    return taskemit_settings.model_copy(update={"drain_on_exit": False, "outbox_poll": 0.2})


async def runs(redis: aioredis.Redis, count: int, timeout: float = 20) -> list[str]:
    """The listener's runs once there are ``count`` (and a moment more, to see any extra one)."""
    deadline = time.monotonic() + timeout
    while await redis.llen(RUNS) < count:
        assert time.monotonic() < deadline, f"{await redis.llen(RUNS)} of {count} runs"
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    return sorted(value.decode() for value in await redis.lrange(RUNS, 0, -1))


async def emptied(db: Database, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while rows := await db.outbox_rows():
        assert time.monotonic() < deadline, f"{rows} outbox rows left"
        await asyncio.sleep(0.05)


async def test_committed_events_run_once_and_rolled_back_ones_never(
    db: Database, settings: Settings, redis: aioredis.Redis, taskemit_worker: Any
) -> None:
    async with Emitter([welcome], settings) as emitter, taskemit_worker([welcome]):
        for n in range(10):
            await db.transaction(add_user(emitter, f"u{n}"), commit=n % 3 != 0)
        done = await runs(redis, 6)
        await emptied(db)
    committed = [f"u{n}" for n in range(10) if n % 3]
    assert done == committed
    assert await db.users() == committed
    counts = await redis.hgetall(settings.keys.event_counts)
    assert counts == {b"user_created": b"6"}  # each stored once


async def test_an_event_emitted_in_a_rolled_back_savepoint_is_dropped(
    db: Database, settings: Settings, redis: aioredis.Redis, taskemit_worker: Any
) -> None:
    async with Emitter([welcome], settings) as emitter, taskemit_worker([welcome]):

        def work(session: Any) -> None:
            sync = getattr(session, "sync_session", session)
            add_user(emitter, "kept")(session)
            savepoint = sync.begin_nested()
            add_user(emitter, "undone")(session)
            savepoint.rollback()
            for outbox in (True, False):
                with sync.begin_nested():
                    emitter.emit("user_created", email=f"released-{outbox}", session=session, outbox=outbox)

        await db.transaction(work, io=True)
        assert await runs(redis, 3) == ["kept", "released-False", "released-True"]
        await emptied(db)


async def test_after_commit_emits_write_no_row_and_go_with_the_commit(
    db: Database, settings: Settings, redis: aioredis.Redis, taskemit_worker: Any
) -> None:
    async with Emitter([welcome], settings) as emitter, taskemit_worker([welcome]):
        await db.transaction(add_user(emitter, "committed", outbox=False))
        await db.transaction(add_user(emitter, "rolled-back", outbox=False), commit=False)
        assert await db.outbox_rows() == 0  # no row, ever: the event waits in the session
        assert await runs(redis, 1) == ["committed"]


async def test_a_missing_outbox_table_fails_entering_the_emitter(
    new_database: Callable[[str], str], settings: Settings
) -> None:
    db = Database(new_database("sqlite+aiosqlite"))
    await db.create_tables(outbox=False)
    with pytest.raises(OutboxTableMissing, match=r"taskemit_outbox.*taskemit outbox create-table"):
        async with Emitter([welcome], settings, outbox=db.engine):
            pass
    await db.dispose()


async def test_a_row_stored_but_not_deleted_is_sent_again_and_stores_nothing(
    db: Database, settings: Settings, redis: aioredis.Redis, taskemit_worker: Any
) -> None:
    """A crash between storing an event and deleting its row leaves exactly this: the event in
    Redis and its row in the table. The next relay sends it again; emit.lua's exactly-once
    check by event uuid makes that store nothing."""
    async with Emitter([welcome], settings) as emitter, taskemit_worker([welcome]):
        receipts = []
        for n in range(3):
            receipts.append(await emitter.publish("user_created", email=f"u{n}"))
        assert await runs(redis, 3) == ["u0", "u1", "u2"]
        # the rows those events had before they were stored, back in the table
        pending = [emitter._prepare("user_created", (), {"email": f"u{n}"}) for n in range(3)]
        rows = []
        for receipt, event in zip(receipts, pending, strict=True):
            assert receipt is not None and event is not None
            event.event_uuid, event.jobs = receipt.event_uuid, receipt.jobs
            rows.append(
                {
                    "event_uuid": event.event_uuid,
                    "event_id": event.event_id,
                    "created_ms": 1,
                    "data": encode_pending(event),
                }
            )
        await db.run(lambda conn: conn.execute(OUTBOX.insert(), rows))
        assert await db.outbox_rows() == 3
        await emitter.relay_outbox(db.engine, central=True)
        await emptied(db)
        (relay,) = emitter._in_transactions().relays()
        assert relay.relayed == 3  # sent again, and taken by Redis as already there
    assert await runs(redis, 3) == ["u0", "u1", "u2"]  # not run again
    assert await redis.hgetall(settings.keys.event_counts) == {b"user_created": b"3"}


async def test_publish_with_a_session_returns_the_receipt_at_once_and_cannot_wait(
    new_database: Callable[[str], str], settings: Settings, redis: aioredis.Redis, taskemit_worker: Any
) -> None:
    db = Database(new_database("sqlite+aiosqlite"))
    await db.create_tables()
    assert isinstance(db.engine, AsyncEngine)
    async with Emitter([welcome], settings) as emitter, taskemit_worker([welcome]):
        async with AsyncSession(db.engine) as session:
            session.add(User(email="p"))
            receipt = await emitter.publish("user_created", email="p", session=session)
            await session.commit()
        assert receipt is not None and list(receipt.jobs) == ["outbox.welcome"]
        await runs(redis, 1)
        assert await redis.exists(settings.keys.event(receipt.event_uuid))  # the id it promised
        with pytest.raises(InvalidArgument, match="cannot wait"):
            await emitter.publish("user_created", email="p", session=object(), wait=True)
        with pytest.raises(InvalidArgument, match="SQLAlchemy Session or AsyncSession"):
            emitter.emit("user_created", email="p", session=object())
    await db.dispose()


@pytest.mark.parametrize("kind", ["sqlite+aiosqlite", "postgresql+asyncpg"])
async def test_rows_wait_while_redis_is_down_and_are_relayed_when_it_is_back(
    kind: str, new_database: Callable[[str], str], settings: Settings, taskemit_worker: Any
) -> None:
    db = Database(new_database(kind))
    await db.create_tables()
    with RedisServer() as server:
        down = settings.model_copy(update={"redis_url": server.url, "connect_timeout": 0.3, "publish_timeout": 0.3})
        async with Emitter([welcome], down, outbox=db.engine) as emitter:
            server.stop()
            for n in range(20):
                await db.transaction(add_user(emitter, f"u{n}"))
            await asyncio.sleep(1.0)
            assert await db.outbox_rows() == 20  # nothing stored: every row waits in the database
            server.start()
            await emptied(db)
            async with aioredis.Redis.from_url(server.url) as redis:
                assert await redis.hgetall(down.keys.event_counts) == {b"user_created": b"20"}
                report = (await relay_reports(redis, space=down.keys)) or None
        assert report is None or report[0].errors > 0  # the outage is counted as relay errors
    await db.dispose()


@pytest.mark.parametrize("kind", ["sqlite+aiosqlite", "postgresql+psycopg"])
async def test_two_relays_on_one_table_store_each_event_once(
    kind: str, new_database: Callable[[str], str], settings: Settings, redis: aioredis.Redis, taskemit_worker: Any
) -> None:
    db = Database(new_database(kind))
    await db.create_tables()
    central = settings.model_copy(update={"outbox_relay": False, "outbox_batch": 50})
    async with Emitter([welcome], central) as writer:  # commits rows and leaves them to the relays
        for first in range(0, 400, 50):

            def work(session: Any, first: int = first) -> None:
                for n in range(first, first + 50):
                    add_user(writer, f"u{n}")(session)

            await db.transaction(work)
    assert await db.outbox_rows() == 400
    engines = [Database(db.url) for _ in range(2)]
    async with Emitter([], central) as one, Emitter([], central) as two:
        await asyncio.gather(
            one.relay_outbox(engines[0].engine, central=True), two.relay_outbox(engines[1].engine, central=True)
        )
        await emptied(db)
        relayed = [relay.relayed for e in (one, two) for relay in e._in_transactions().relays()]
    async with taskemit_worker([welcome]):
        done = await runs(redis, 400)
    assert done == sorted(f"u{n}" for n in range(400))
    assert await redis.hgetall(settings.keys.event_counts) == {b"user_created": b"400"}
    print(f"relayed by each relay: {relayed}")
    assert sum(relayed) >= 400
    for other in engines:
        await other.dispose()
    await db.dispose()


async def test_an_undecodable_row_is_parked_and_reported_and_the_others_go_on(
    new_database: Callable[[str], str], settings: Settings, redis: aioredis.Redis, taskemit_worker: Any
) -> None:
    db = Database(new_database("sqlite+aiosqlite"))
    await db.create_tables()
    bad = {"event_uuid": "not-an-event", "event_id": "user_created", "created_ms": 1, "data": "{not json"}
    await db.run(lambda conn: conn.execute(OUTBOX.insert(), [bad]))
    async with Emitter([welcome], settings, outbox=db.engine) as emitter, taskemit_worker([welcome]):
        await db.transaction(add_user(emitter, "good"))
        assert await runs(redis, 1) == ["good"]
        deadline = time.monotonic() + 10
        while await db.outbox_rows() > 1:  # the good row's, deleted soon after it was stored
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        (relay,) = emitter._in_transactions().relays()
        await relay.look()
        report = relay.report()
    assert await db.outbox_rows() == 1  # parked, for an operator to look at
    assert report.errors == 1 and "not-an-event" in report.last_error and report.backlog == 1
    assert report.lag > 1_000_000  # the parked row's age: its created_ms is 1
    await db.dispose()


async def test_a_relay_reports_its_database_backlog_and_lag_in_redis(
    new_database: Callable[[str], str], settings: Settings, redis: aioredis.Redis
) -> None:
    url = new_database("postgresql+asyncpg")
    db = Database(url)
    await db.create_tables()
    async with Emitter([welcome], settings, outbox=db.engine) as emitter:
        (relay,) = emitter._in_transactions().relays()
        deadline = time.monotonic() + 10
        while not (reports := await relay_reports(redis, space=settings.keys)):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert reports[0].relay_id == relay.relay_id
        assert reports[0].claims == "skip-locked" and reports[0].table == "taskemit_outbox"
        assert reports[0].database.startswith("postgresql+asyncpg://postgres@127.0.0.1") and "***" not in url
    assert await relay_reports(redis, space=settings.keys) == []  # a relay that stops cleanly is forgotten
    await db.dispose()


def test_sqlalchemy_is_imported_only_when_the_outbox_is_used() -> None:
    """taskemit imports neither SQLAlchemy nor its outbox package until a session or an outbox is
    used (Litestar, when advanced-alchemy is installed, imports both itself: only the difference counts)."""
    code = """
import json, sys
def alchemy():
    return {m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'advanced_alchemy', 'taskemit.outbox')}
import taskemit, taskemit.cli, taskemit.engine, taskemit.testing
plain = sorted(alchemy() | {m for m in sys.modules if m.startswith('taskemit.outbox')})
import litestar
before = alchemy()
import taskemit.litestar
print(json.dumps([plain, sorted(alchemy() - before), [m for m in sys.modules if m.startswith('taskemit.outbox')]]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == [[], [], []]


async def test_a_listener_emits_in_its_own_transaction_and_the_event_keeps_its_cause(
    new_database: Callable[[str], str], settings: Settings, redis: aioredis.Redis, taskemit_worker: Any
) -> None:
    """What a listener's injected Emitter is (``caused_by``): emit and publish take ``session`` too."""
    db = Database(new_database("sqlite+aiosqlite"))
    await db.create_tables()
    assert isinstance(db.engine, AsyncEngine)
    async with Emitter([welcome], settings) as emitter, taskemit_worker([welcome]):
        caused = emitter.caused_by("the-cause")
        async with AsyncSession(db.engine) as session:
            caused.emit("user_created", email="emitted", session=session)
            receipt = await caused.publish("user_created", email="published", session=session)
            await session.commit()
        assert await runs(redis, 2) == ["emitted", "published"]
        assert receipt is not None
        assert await redis.hget(settings.keys.event(receipt.event_uuid), "cause") == b"the-cause"
    await db.dispose()
