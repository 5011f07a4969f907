"""End to end with Litestar and advanced-alchemy: a handler inserts a row and emits in the same
transaction, one request in ten fails after the emit and rolls back; on SQLite and PostgreSQL,
with advanced-alchemy's async and sync configs. Each committed row gets exactly one listener
run, no rolled-back row any."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from types import ModuleType

import pytest
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig, SQLAlchemyPlugin, SQLAlchemySyncConfig
from litestar import Litestar, post
from litestar.di import NamedDependency
from litestar.exceptions import ImproperlyConfiguredException
from litestar.params import FromPath
from litestar.testing import AsyncTestClient
from outbox_app import Database
from sqlalchemy import select
from sqlalchemy.orm import Session

from taskemit import Emitter, OutboxTableMissing
from taskemit.engine import InProcessWorker
from taskemit.litestar import TaskEmitConfig, TaskEmitPlugin
from taskemit.outbox import outbox_table
from taskemit.settings import Settings

REQUESTS = 30


@pytest.fixture
def settings(taskemit_settings: Settings, point_env_at: Callable[..., None]) -> Settings:
    point_env_at(taskemit_settings)  # the plugin loads its settings from TASKEMIT_*
    return taskemit_settings.model_copy(update={"drain_on_exit": False})


def email(n: int) -> str:
    return f"u{n}@refused.example" if n % 10 == 3 else f"u{n}@example.com"


async def welcomed(capsys: pytest.CaptureFixture[str], count: int, timeout: float = 30) -> list[str]:
    """The emails the listener welcomed (it prints one line per run), once there are ``count``."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        seen += re.findall(r"welcome, (\S+) \(signup", capsys.readouterr().out)
        if len(seen) >= count:
            await asyncio.sleep(0.3)  # and a moment more, to see a run too many
            return sorted(seen + re.findall(r"welcome, (\S+) \(signup", capsys.readouterr().out))
        assert time.monotonic() < deadline, f"{len(seen)} of {count} runs"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("kind", ["sqlite+aiosqlite", "postgresql+asyncpg"])
async def test_each_committed_signup_is_welcomed_once_and_no_refused_one(
    kind: str,
    new_database: Callable[[str], str],
    examples: Callable[[str], ModuleType],
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    example = examples("transactions_app")
    db = Database(new_database(kind))
    await db.run(example.Base.metadata.create_all)
    app = example.create_app(db.url)
    statuses = []
    async with AsyncTestClient(app) as client, InProcessWorker([example.send_welcome_email], settings):
        for n in range(REQUESTS):
            statuses.append((await client.post(f"/signups/{email(n)}")).status_code)
        committed = sorted(email(n) for n in range(REQUESTS) if n % 10 != 3)
        assert await welcomed(capsys, len(committed)) == committed
    assert statuses.count(201) == len(committed) and statuses.count(500) == REQUESTS // 10
    rows = await db.run(lambda conn: sorted(row[0] for row in conn.execute(select(example.Signup.email))))
    assert rows == committed
    assert await db.outbox_rows() == 0
    await db.dispose()


@pytest.mark.parametrize("kind", ["sqlite+pysqlite", "postgresql+psycopg"])
async def test_the_sync_config_and_a_sync_handler(
    kind: str,
    new_database: Callable[[str], str],
    examples: Callable[[str], ModuleType],
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    example = examples("transactions_app")
    db = Database(new_database(kind))
    await db.run(example.Base.metadata.create_all)

    @post("/signups/{address:str}", status_code=201, sync_to_thread=True)
    def sign_up(
        address: FromPath[str], db_session: NamedDependency[Session], emitter: NamedDependency[Emitter]
    ) -> None:
        signup = example.Signup(email=address)
        db_session.add(signup)
        db_session.flush()
        emitter.emit("signed_up", signup_id=signup.id, email=address, session=db_session)
        if address.endswith("@refused.example"):
            raise example.Refused(address)

    config = SQLAlchemySyncConfig(connection_string=db.url, before_send_handler="autocommit")
    app = Litestar(
        route_handlers=[sign_up],
        plugins=[
            SQLAlchemyPlugin(config=config),
            TaskEmitPlugin(TaskEmitConfig(listeners=[example.send_welcome_email], outbox=[config])),
        ],
    )
    async with AsyncTestClient(app) as client, InProcessWorker([example.send_welcome_email], settings):
        for n in range(REQUESTS):
            await client.post(f"/signups/{email(n)}")
        committed = sorted(email(n) for n in range(REQUESTS) if n % 10 != 3)
        assert await welcomed(capsys, len(committed)) == committed
    assert await db.outbox_rows() == 0
    await db.dispose()


async def test_a_missing_outbox_table_fails_the_start_up(
    new_database: Callable[[str], str], examples: Callable[[str], ModuleType], settings: Settings
) -> None:
    example = examples("transactions_app")
    db = Database(new_database("sqlite+aiosqlite"))
    await db.run(lambda conn: example.Signup.__table__.create(conn))
    with pytest.raises(OutboxTableMissing, match="taskemit_outbox"):
        async with AsyncTestClient(example.create_app(db.url)):
            pass
    await db.dispose()


def test_outbox_true_without_a_sqlalchemy_plugin_is_refused_when_the_app_is_built(settings: Settings) -> None:
    with pytest.raises(ImproperlyConfiguredException, match="SQLAlchemyPlugin"):
        Litestar(plugins=[TaskEmitPlugin(TaskEmitConfig(outbox=True))])


async def test_the_dashboard_shows_the_relays_backlog_lag_and_errors(
    new_database: Callable[[str], str], examples: Callable[[str], ModuleType], settings: Settings
) -> None:
    example = examples("transactions_app")
    db = Database(new_database("sqlite+aiosqlite"))
    await db.run(example.Base.metadata.create_all)
    bad = {"event_uuid": "not-an-event", "event_id": "signed_up", "created_ms": 1, "data": "{not json"}
    await db.run(lambda conn: conn.execute(outbox_table(example.Base.metadata).insert(), [bad]))
    config = TaskEmitConfig(
        listeners=[example.send_welcome_email], outbox=True, dashboard_path="/taskemit", guards=[], csrf_secret="s"
    )
    database = SQLAlchemyAsyncConfig(connection_string=db.url, before_send_handler="autocommit")
    app = Litestar(plugins=[SQLAlchemyPlugin(config=database), TaskEmitPlugin(config)])
    async with AsyncTestClient(app) as client:
        deadline = time.monotonic() + 20
        while not (relays := (await client.get("/taskemit/api/outbox")).json()) or not relays[0]["errors"]:
            assert time.monotonic() < deadline, relays
            await asyncio.sleep(0.2)
        (relay,) = relays
        assert relay["database"] == db.url and relay["table"] == "taskemit_outbox" and relay["claims"] == "lease"
        assert relay["backlog"] == 1 and relay["lag"] > 1_000_000 and "not-an-event" in relay["last_error"]
        html = (await client.get("/taskemit/workers")).text
        assert "<h2>Outbox relays</h2>" in html and relay["relay_id"] in html and "does not decode" in html
    await db.dispose()
