"""Shared fixtures: the taskemit pytest plugin (Redis server, settings, worker) plus helpers."""

from __future__ import annotations

import importlib
import itertools
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import settings as hypothesis_settings
from pgcluster import PostgresCluster, PostgresUnavailable
from redis import asyncio as aioredis

from taskemit.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"

# Every property test runs without Hypothesis's 200 ms deadline per example: on a busy machine a slow
# example is a scheduling delay, not a failure. A test's own @settings keeps this unless it says otherwise.
hypothesis_settings.register_profile("taskemit", deadline=None)
hypothesis_settings.load_profile("taskemit")


@pytest.fixture(autouse=True)
def _spool_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings loaded without the taskemit_settings fixture spool under a temporary directory too."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


@pytest.fixture
async def redis(taskemit_settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """A client on the test Redis (already flushed by taskemit_settings)."""
    client = aioredis.Redis.from_url(taskemit_settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def examples(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], ModuleType]]:
    """``examples("quickstart")`` imports docs/examples/quickstart.py afresh, under its own name."""
    names = {p.stem for p in EXAMPLES.glob("*.py")}

    def forget() -> None:
        for name in names:
            sys.modules.pop(name, None)

    monkeypatch.syspath_prepend(str(EXAMPLES))
    forget()
    yield importlib.import_module
    forget()


@pytest.fixture
def point_env_at(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Set TASKEMIT_REDIS_URL / TASKEMIT_QUEUE_NAME (and more) from the test's settings."""

    def point(settings: Settings, **more: str) -> None:
        monkeypatch.setenv("TASKEMIT_REDIS_URL", settings.redis_url)
        monkeypatch.setenv("TASKEMIT_NAMESPACE", settings.namespace)
        for name, value in more.items():
            monkeypatch.setenv(f"TASKEMIT_{name.upper()}", value)

    return point


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A private PostgreSQL cluster for the session's tests (skips, saying why, where none can be had)."""
    try:
        cluster = PostgresCluster().start()
    except (PostgresUnavailable, OSError) as exc:
        pytest.skip(f"no PostgreSQL cluster: {exc}")
    yield cluster
    cluster.stop()


#: the databases the outbox is tested on: SQLite (async and sync) and PostgreSQL (asyncpg, psycopg 3)
DATABASES = ("sqlite+aiosqlite", "sqlite+pysqlite", "postgresql+asyncpg", "postgresql+psycopg")
_databases = itertools.count()


@pytest.fixture
def new_database(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``new_database(kind)``: the SQLAlchemy URL of an empty database of ``kind`` (one of DATABASES)."""

    def make(kind: str) -> str:
        if kind.startswith("sqlite"):
            return f"{kind}:///{tmp_path / f'app-{next(_databases)}.db'}"
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        name = f"t_{uuid.uuid4().hex[:12]}"
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={cluster.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return cluster.url(kind.partition("+")[2], name)

    return make
