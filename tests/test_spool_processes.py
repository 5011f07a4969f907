"""No accepted event is lost in an outage, with real processes: a web app stopped with SIGTERM
while Redis is down keeps the events it answered 2xx for in its spool, and stores them once it
runs again."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from children import TESTS, child_env, stop
from redis import asyncio as aioredis

from taskemit.settings import Settings
from taskemit.store.redis_server import RedisServer, free_port


def start_app(settings: Settings, port: int, spool: Path, log: Path) -> subprocess.Popen[bytes]:
    env = child_env(
        settings,
        TASKEMIT_SPOOL_DIR=str(spool),
        TASKEMIT_SHUTDOWN_TIMEOUT="1",
        TASKEMIT_CONNECT_TIMEOUT="0.5",
        TASKEMIT_PUBLISH_TIMEOUT="0.5",
    )
    command = [sys.executable, "-m", "uvicorn", "web_listeners:app", "--port", str(port), "--log-level", "info"]
    return subprocess.Popen(
        command, env=env, cwd=TESTS, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
    )


async def wait_listening(port: int, app: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert app.poll() is None, log.read_text()
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError("the app did not start listening")


async def runs(redis: aioredis.Redis, count: int, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [int(n) for n in await redis.lrange("runs:web", 0, -1)]
        if len(done) >= count:
            return done
        await asyncio.sleep(0.05)
    raise AssertionError(f"{await redis.llen('runs:web')} of {count} events ran")


async def test_events_answered_2xx_during_an_outage_survive_a_sigterm_and_run_once(
    taskemit_settings: Settings, tmp_path: Path
) -> None:
    with RedisServer() as server:
        settings = taskemit_settings.model_copy(update={"redis_url": server.url, "drain_on_exit": False})
        port, spool, log = free_port(), tmp_path / "spool", tmp_path / "app.log"
        worker = subprocess.Popen(
            [sys.executable, "-m", "taskemit", "worker", "web_listeners:WorkerSettings"],
            env=child_env(settings),
            cwd=TESTS,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        app = start_app(settings, port, spool, log)
        redis = aioredis.Redis.from_url(server.url)
        accepted: list[int] = []
        try:
            await wait_listening(port, app, log)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                for n in range(20):
                    assert (await client.post(f"/orders/{n}")).status_code == 202
                    accepted.append(n)
                assert sorted(await runs(redis, 20)) == list(range(20))
                await redis.aclose()
                server.stop()  # the outage: Redis is gone (and keeps nothing)
                for n in range(20, 50):
                    assert (await client.post(f"/orders/{n}")).status_code == 202  # buffered, answered
                    accepted.append(n)
            app.send_signal(signal.SIGTERM)  # a deploy, during the outage
            # uvicorn shuts down the app, then exits by the signal it got (-15)
            assert await asyncio.to_thread(app.wait, 30) in (0, -signal.SIGTERM), log.read_text()
            assert "Application shutdown complete" in log.read_text()
            assert "wait in the spool" in log.read_text()
            server.start()  # Redis is back, empty
            redis = aioredis.Redis.from_url(server.url)
            app = start_app(settings, port, spool, log)  # the new app stores what the old one spooled
            await wait_listening(port, app, log)
            await runs(redis, 30)
            await asyncio.sleep(1.0)  # a duplicate would show now
            done = [int(n) for n in await redis.lrange("runs:web", 0, -1)]
            assert sorted(done) == list(range(20, 50))  # the new Redis holds the outage's events, each once
            assert len(accepted) == 50
        finally:
            stop(app, worker)
            await redis.aclose()


async def test_spool_commands_show_and_store_what_waits(
    taskemit_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from taskemit import Emitter, listener
    from taskemit.cli import cli

    @listener("order_received", name="web.record")
    async def record(n: int) -> None: ...

    down = taskemit_settings.model_copy(
        update={"redis_url": "redis://127.0.0.1:1/0", "shutdown_timeout": 0.3, "drain_on_exit": False}
    )
    async with Emitter([record], down) as emitter:
        for n in range(3):
            emitter.emit("order_received", n=n)
    for name, value in (
        ("REDIS_URL", taskemit_settings.redis_url),
        ("NAMESPACE", taskemit_settings.namespace),
        ("SPOOL_DIR", taskemit_settings.spool_dir),
    ):
        monkeypatch.setenv(f"TASKEMIT_{name}", value)
    runner = CliRunner()
    shown = await asyncio.to_thread(runner.invoke, cli, ["spool", "status"])
    assert shown.exit_code == 0 and shown.output.startswith("3 events waiting in ")
    as_json = await asyncio.to_thread(runner.invoke, cli, ["spool", "status", "--json"])
    assert json.loads(as_json.output)["events"] == 3
    flushed = await asyncio.to_thread(runner.invoke, cli, ["spool", "flush"])
    assert flushed.exit_code == 0 and "stored 3 events" in flushed.output and "0 left" in flushed.output
    again = await asyncio.to_thread(runner.invoke, cli, ["spool", "flush"])
    assert "is empty" in again.output
    redis = aioredis.Redis.from_url(taskemit_settings.redis_url)
    try:
        assert await redis.zcard(taskemit_settings.queue_key) == 3
    finally:
        await redis.aclose()
