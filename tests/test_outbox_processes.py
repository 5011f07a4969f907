"""The outbox with real processes: a web app SIGKILLed after its commits and before its relay stored
them, then restarted or followed by ``taskemit outbox relay``; two relay processes racing on one
table; the relays as ``taskemit check`` and the metrics show them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from children import TESTS, child_env, stop
from outbox_app import RUNS, Database, add_user, welcome
from prometheus_client import generate_latest
from redis import asyncio as aioredis

from taskemit import Emitter
from taskemit.monitor.metrics import metrics_registry
from taskemit.monitor.outbox import relay_reports
from taskemit.settings import Settings
from taskemit.store.redis_server import RedisServer, free_port

EXAMPLES = TESTS.parent / "docs" / "examples"


def spawn(command: list[str], env: dict[str, str], log: Path, cwd: Path = TESTS) -> subprocess.Popen[bytes]:
    env = {**env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join([str(EXAMPLES), env["PYTHONPATH"]])}
    return subprocess.Popen(
        command, env=env, cwd=cwd, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
    )


async def until(check: Callable[[], Any], what: str, timeout: float = 30, *logs: Path) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} after {timeout}s\n" + "\n".join(log.read_text()[-2000:] for log in logs))
        await asyncio.sleep(0.05)


async def listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


def welcomed(log: Path) -> list[str]:
    return sorted(re.findall(r"welcome, (\S+) \(signup", log.read_text()))


@pytest.mark.parametrize(("kind", "then"), [("sqlite+aiosqlite", "restart"), ("postgresql+asyncpg", "relay")])
async def test_events_committed_before_a_sigkill_run_once_after_a_restart_or_a_relay(
    kind: str, then: str, new_database: Callable[[str], str], taskemit_settings: Settings, tmp_path: Path
) -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        from transactions_app import Base
    finally:
        sys.path.remove(str(EXAMPLES))
    db = Database(new_database(kind))
    await db.run(Base.metadata.create_all)
    server = RedisServer()  # not started: the app commits while its Redis is down
    settings = taskemit_settings.model_copy(update={"redis_url": server.url})
    env = child_env(settings, DATABASE_URL=db.url, TASKEMIT_CONNECT_TIMEOUT="0.3", TASKEMIT_PUBLISH_TIMEOUT="0.3")
    port, app_log, worker_log = free_port(), tmp_path / "app.log", tmp_path / "worker.log"
    uvicorn = [sys.executable, "-m", "uvicorn", "transactions_app:app", "--port", str(port)]
    app = spawn(uvicorn, env, app_log, EXAMPLES)
    children = [app]
    timeline = []
    try:
        await until(lambda: listening(port), "the app listens", 30, app_log)
        statuses = {}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for n in range(20):
                address = f"u{n}@refused.example" if n % 10 == 3 else f"u{n}@example.com"
                statuses[address] = (await client.post(f"/signups/{address}")).status_code
        committed = sorted(address for address, status in statuses.items() if status == 201)
        assert len(committed) == 18 and sorted(statuses.values()).count(500) == 2
        assert await db.outbox_rows() == 18  # committed, not stored: Redis is down
        timeline.append(("app answered 20 requests (18 committed, 2 rolled back), Redis down", 18))
        stop(app)
        timeline.append(("app SIGKILLed; outbox rows", await db.outbox_rows()))
        server.start()
        worker = [sys.executable, "-m", "taskemit", "worker", "transactions_app:WorkerSettings"]
        children.append(spawn(worker, env, worker_log, EXAMPLES))  # with the examples' settings.toml, as the app
        if then == "restart":
            children.append(spawn(uvicorn, env, app_log, EXAMPLES))
        else:
            relay = [sys.executable, "-m", "taskemit", "outbox", "relay", "--database-url", db.url]
            children.append(spawn(relay, env, tmp_path / "relay.log", EXAMPLES))
        timeline.append(
            (f"Redis back; a worker and {'the app again' if then == 'restart' else 'taskemit outbox relay'}", 0)
        )
        await until(lambda: len(welcomed(worker_log)) >= 18, "18 welcomes", 60, worker_log, app_log)
        await until(lambda: _empty(db), "an empty outbox", 30)
        await asyncio.sleep(1.0)  # a run too many would show by now
        done = welcomed(worker_log)
        timeline.append(("listener runs", len(done)))
    finally:
        stop(*children)
        server.stop()
        await db.dispose()
    for what, count in timeline:
        print(f"{what:<80} {count}")
    assert done == committed  # each committed event ran once; no rolled-back one ran


@pytest.mark.timeout(300)  # three processes and a database: slow when the machine is busy
@pytest.mark.parametrize("kind", ["sqlite+aiosqlite", "postgresql+psycopg"])
async def test_two_relay_processes_store_each_event_once_and_check_and_metrics_show_them(
    kind: str,
    new_database: Callable[[str], str],
    taskemit_settings: Settings,
    redis: aioredis.Redis,
    taskemit_worker: Any,
    point_env_at: Callable[..., None],
    tmp_path: Path,
) -> None:
    point_env_at(taskemit_settings)
    settings = taskemit_settings.model_copy(update={"outbox_relay": False, "drain_on_exit": False})
    db = Database(new_database(kind))
    await db.create_tables()
    events = 2000
    env = child_env(settings, TASKEMIT_OUTBOX_BATCH="50", TASKEMIT_OUTBOX_POLL="0.05")
    command = [sys.executable, "-m", "taskemit", "outbox", "relay", "--database-url", db.url]
    logs = [tmp_path / "relay-1.log", tmp_path / "relay-2.log"]
    relays = [spawn(command, env, log) for log in logs]
    try:
        # both relays running before the rows come, which the app commits 100 at a time, a poll
        # apart, so that neither relay can take every row while the other waits for the CPU
        began = time.monotonic()
        await until(lambda: _reports(redis, settings, 2), "two relay reports", 30, *logs)
        print(f"relays up: {time.monotonic() - began:.1f}s")
        async with Emitter([welcome], settings) as emitter:
            for first in range(0, events, 100):

                def work(session: Any, first: int = first) -> None:
                    for n in range(first, first + 100):
                        add_user(emitter, f"u{n}")(session)

                await db.transaction(work)
                await asyncio.sleep(0.05)
        await until(lambda: _empty(db), "an empty outbox", 60, *logs)
        print(f"relayed: {time.monotonic() - began:.1f}s")
        check = subprocess.run(
            [sys.executable, "-m", "taskemit", "check", "--json"], env=env, capture_output=True, text=True
        )
        reports = json.loads(check.stdout)["outbox_relays"]
        metrics = generate_latest(metrics_registry(settings)).decode()
    finally:
        for relay in relays:
            relay.terminate()  # SIGTERM: a clean stop, which prints the count
        for relay in relays:
            relay.wait(30)
        stop(*relays)
        print(f"relays stopped: {time.monotonic() - began:.1f}s")
    relayed = [int(re.findall(r"stopped; (\d+) events relayed", log.read_text())[-1]) for log in logs]
    async with taskemit_worker([welcome]):
        await until(lambda: _count_is(redis, events), f"{events} runs", 60)
        await asyncio.sleep(0.5)
    runs = sorted(value.decode() for value in await redis.lrange(RUNS, 0, -1))
    print(f"relayed by each process: {relayed}; runs: {len(runs)}")
    assert runs == sorted(f"u{n}" for n in range(events))  # each once
    assert await redis.hgetall(settings.keys.event_counts) == {b"user_created": str(events).encode()}
    assert sum(relayed) == events and all(relayed), relayed  # both took rows, none a row the other had
    assert len(reports) == 2 and {r["table"] for r in reports} == {"taskemit_outbox"}
    assert {r["claims"] for r in reports} == {"lease" if kind.startswith("sqlite") else "skip-locked"}
    assert metrics.count("taskemit_outbox_backlog{") == 2 and "taskemit_outbox_relayed_total{" in metrics
    await db.dispose()


async def _count_is(redis: aioredis.Redis, count: int) -> bool:
    return int(await redis.llen(RUNS)) >= count


async def _empty(db: Database) -> bool:
    return await db.outbox_rows() == 0


async def _reports(redis: aioredis.Redis, settings: Settings, count: int) -> bool:
    return len(await relay_reports(redis, space=settings.keys)) >= count


def test_outbox_commands_create_the_table_count_its_rows_and_refuse_a_missing_one(
    new_database: Callable[[str], str], taskemit_settings: Settings
) -> None:
    url = new_database("sqlite+aiosqlite")
    env = child_env(taskemit_settings)

    def taskemit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "taskemit", "outbox", *args, "--database-url", url],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    refused = taskemit("relay")
    assert refused.returncode == 2 and "taskemit_outbox" in refused.stderr and "create-table" in refused.stderr
    created = taskemit("create-table")
    assert created.returncode == 0 and "taskemit_outbox" in created.stdout
    assert taskemit("create-table").returncode == 0  # again: it is there already
    status = taskemit("status", "--json")
    assert json.loads(status.stdout) == {
        "database": url,
        "table": "taskemit_outbox",
        "backlog": 0,
        "lag": 0.0,
    }
