"""taskemit workers as separate processes on a real redis-server: two services' pools on one
Redis, --queue, a worker that outlives a Redis restart, and stopping on signals."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pool_listeners
import pytest
from children import TESTS, child_env, stop
from redis import asyncio as aioredis

from taskemit import Emitter
from taskemit.monitor.deadletter import list_dead_letters
from taskemit.monitor.workers import live_workers
from taskemit.settings import Settings
from taskemit.store.redis_server import RedisServer

BOTH = [pool_listeners.charge, pool_listeners.pack]


def start(
    settings: Settings, *args: str, log: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "taskemit", "worker", *args],
        env=child_env(settings, **(env or {})),
        cwd=TESTS,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def runs(redis: aioredis.Redis, key: str, count: int, timeout: float = 20.0) -> list[tuple[int, int]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = [item.decode().split(":") for item in await redis.lrange(key, 0, -1)]
        if len(items) >= count:
            return [(int(order), int(pid)) for order, pid in items]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{key}: {await redis.llen(key)} of {count} runs after {timeout}s")


async def live(redis: aioredis.Redis, settings: Settings, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while len(await live_workers(redis, space=settings.keys)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} workers started"
        await asyncio.sleep(0.05)


@pytest.fixture
def settings(taskemit_settings: Settings) -> Settings:
    return taskemit_settings.model_copy(update={"drain_on_exit": False})


async def test_two_services_pools_on_one_redis_each_run_only_their_own_listeners(
    settings: Settings, redis: aioredis.Redis
) -> None:
    billing = [start(settings, "pool_listeners:Billing") for _ in range(2)]
    shipping = [start(settings, "pool_listeners:Shipping") for _ in range(2)]
    try:
        await live(redis, settings, 4)
        async with Emitter(BOTH, settings) as emitter:
            for order in range(40):
                emitter.emit("order_placed", order)
        charged = await runs(redis, "runs:charge", 40)
        packed = await runs(redis, "runs:pack", 40)
        await asyncio.sleep(0.5)  # anything run twice would show now
        assert sorted(order for order, _ in charged) == list(range(40))
        assert sorted(order for order, _ in packed) == list(range(40))
        assert {pid for _, pid in charged} <= {p.pid for p in billing}
        assert {pid for _, pid in packed} <= {p.pid for p in shipping}
        assert await redis.llen("runs:charge") == 40 and await redis.llen("runs:pack") == 40
        assert (await list_dead_letters(redis, space=settings.keys)).items == []
        assert all(worker.poll() is None for worker in billing + shipping)
    finally:
        stop(*billing, *shipping)


async def test_queue_option_serves_only_that_queue(settings: Settings, redis: aioredis.Redis) -> None:
    worker = start(settings, "pool_listeners:Both", "--queue", "billing")
    try:
        await live(redis, settings, 1)
        (info,) = await live_workers(redis, space=settings.keys)
        assert info.listeners == ["billing.charge"] and info.queues == ["billing"]
        async with Emitter(BOTH, settings) as emitter:
            emitter.emit("order_placed", 1)
        assert await runs(redis, "runs:charge", 1) == [(1, worker.pid)]
        await asyncio.sleep(0.5)
        assert await redis.llen("runs:pack") == 0  # left queued for a worker of the default queue
    finally:
        stop(worker)


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


async def test_a_worker_survives_a_redis_restart(
    taskemit_settings: Settings, own_redis: RedisServer, tmp_path: Path
) -> None:
    settings = taskemit_settings.model_copy(update={"redis_url": own_redis.url, "drain_on_exit": False})
    log = tmp_path / "worker.log"
    # no idle poll to fall back on within the test: after the restart, jobs are claimed because
    # the worker subscribed to the wake channel again
    worker = start(settings, "pool_listeners:Both", log=log, env={"TASKEMIT_IDLE_POLL": "3600"})
    redis = aioredis.Redis.from_url(own_redis.url)
    try:
        await live(redis, settings, 1)
        async with Emitter(BOTH, settings) as emitter:
            await emitter.publish("order_placed", 1)
        await runs(redis, "runs:pack", 1)
        own_redis.stop()  # SIGKILL: a crash, nothing kept
        await asyncio.sleep(3)
        assert worker.poll() is None, log.read_text()
        own_redis.start()
        await redis.aclose()
        redis = aioredis.Redis.from_url(own_redis.url)
        wake = settings.keys.wake_channel(settings.queue_key)
        deadline = time.monotonic() + 30
        while dict(await redis.pubsub_numsub(wake)).get(wake.encode(), 0) < 1:  # subscribed again
            assert time.monotonic() < deadline and worker.poll() is None, log.read_text()
            await asyncio.sleep(0.1)
        async with Emitter(BOTH, settings) as emitter:
            await emitter.publish("order_placed", 2)  # (may be taken by the claim made on resubscribing)
        assert [order for order, _ in await runs(redis, "runs:pack", 1, timeout=30)] == [2]  # the new Redis is empty
        async with Emitter(BOTH, settings) as emitter:
            await emitter.publish("order_placed", 3)  # only the wake channel brings this one
        assert [order for order, _ in await runs(redis, "runs:pack", 2, timeout=30)] == [2, 3]
        assert [order for order, _ in await runs(redis, "runs:charge", 2, timeout=30)] == [2, 3]
        assert worker.poll() is None
        # the heartbeat shows the outage
        deadline = time.monotonic() + 20
        while True:
            workers = await live_workers(redis, space=settings.keys)
            if workers and workers[0].last_outage:
                break
            assert time.monotonic() < deadline, "no heartbeat with the outage"
            await asyncio.sleep(0.2)
        # noticed at its first call to Redis after the kill, over by the first after the restart
        assert workers[0].outages == 1 and 0.5 <= workers[0].last_outage["seconds"] <= 30
        text = log.read_text()
        assert text.count("is unavailable") == 1 and text.count("is available again") == 1
    finally:
        stop(worker)
        await redis.aclose()


async def test_sigterm_lets_running_listeners_finish_and_exits_0(settings: Settings, redis: aioredis.Redis) -> None:
    worker = start(settings, "pool_listeners:Napper")
    try:
        await live(redis, settings, 1)
        async with Emitter([pool_listeners.nap], settings) as emitter:
            receipt = await emitter.publish("nap", 1.5)
        assert await runs(redis, "runs:nap", 1) == [(1, worker.pid)]
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 20) == 0
        assert await redis.llen("runs:nap-done") == 1  # it ran to the end
        assert receipt is not None
        status = await receipt.status()
        assert status is not None and status.jobs[0].status == "complete"
    finally:
        stop(worker)


async def test_a_stop_past_the_grace_gives_the_job_back_without_counting_the_attempt(
    settings: Settings, redis: aioredis.Redis
) -> None:
    # max_tries=1: had the interrupted run counted, the job would be dead-lettered
    impatient = settings.model_copy(update={"shutdown_grace": 0.5})
    first = start(impatient, "pool_listeners:Napper", env={"TASKEMIT_SHUTDOWN_GRACE": "0.5"})
    second: subprocess.Popen[bytes] | None = None
    try:
        await live(redis, settings, 1)
        async with Emitter([pool_listeners.nap], settings) as emitter:
            receipt = await emitter.publish("nap", 6.0)
        await runs(redis, "runs:nap", 1)
        first.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(first.wait, 60) == 0
        assert await redis.llen("runs:nap-done") == 0  # it stopped past the grace, not at the listener's end
        second = start(settings, "pool_listeners:Napper")
        again = await runs(redis, "runs:nap", 2)
        assert again == [(1, first.pid), (1, second.pid)]  # attempt 1 both times
        assert receipt is not None
        status = await receipt.wait(timeout=20)
        assert status.jobs[0].status == "complete"
        assert await redis.lrange("runs:nap-done", 0, -1) == [str(second.pid).encode()]
        assert (await list_dead_letters(redis, space=settings.keys)).items == []
    finally:
        stop(first, *([second] if second is not None else []))


async def test_a_second_signal_stops_at_once(settings: Settings, redis: aioredis.Redis) -> None:
    worker = start(settings, "pool_listeners:Napper")
    try:
        await live(redis, settings, 1)
        async with Emitter([pool_listeners.nap], settings) as emitter:
            await emitter.publish("nap", 30.0)
        await runs(redis, "runs:nap", 1)
        worker.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        worker.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(worker.wait, 60) == 0
        assert await redis.llen("runs:nap-done") == 0  # it did not wait for the listener (the 30 s grace)
        ready = settings.keys.ready(settings.queue_key, pool_listeners.nap.name)
        assert await redis.zcard(ready) == 1  # given back, ready for another worker
    finally:
        stop(worker)


async def test_the_pool_replaces_a_worker_past_max_jobs_per_child(
    settings: Settings, redis: aioredis.Redis, tmp_path: Path
) -> None:
    log = tmp_path / "pool.log"
    pool = start(settings, "pool_listeners:Shipping", "-p", "2", log=log, env={"TASKEMIT_MAX_JOBS_PER_CHILD": "3"})
    try:
        await live(redis, settings, 2)
        async with Emitter([pool_listeners.pack], settings) as emitter:
            for order in range(12):
                await emitter.publish("order_placed", order)
                await asyncio.sleep(0.05)
        packed = await runs(redis, "runs:pack", 12, timeout=40)
        assert sorted(order for order, _ in packed) == list(range(12))  # each once, none lost
        per_process = Counter(pid for _, pid in packed)
        assert max(per_process.values()) <= 3 and len(per_process) >= 4  # at most 3 jobs per process
        assert pool.poll() is None  # the supervisor carries on
        # each child stopped with the recycle exit code (75) and was replaced at once, not taken
        # for a crash (restarted after a growing delay)
        text = log.read_text()
        assert text.count("was recycled; starting a new one") >= len(per_process) - 2, text
        assert "restarting in" not in text, text
    finally:
        stop(pool)


async def test_a_worker_past_max_memory_mb_stops_to_be_replaced(settings: Settings, redis: aioredis.Redis) -> None:
    worker = start(settings, "pool_listeners:Shipping", env={"TASKEMIT_MAX_MEMORY_MB": "1"})  # any process exceeds it
    try:
        await live(redis, settings, 1)
        async with Emitter([pool_listeners.pack], settings) as emitter:
            await emitter.publish("order_placed", 1)
        assert await runs(redis, "runs:pack", 1) == [(1, worker.pid)]
        assert await asyncio.to_thread(worker.wait, 20) == 75  # stopped gracefully, for a supervisor to replace
    finally:
        stop(worker)


async def test_workers_stop_when_their_supervisor_is_killed(settings: Settings, redis: aioredis.Redis) -> None:
    pool = start(settings, "pool_listeners:Shipping", "-p", "2")
    children: list[int] = []
    try:
        await live(redis, settings, 2)
        children = [info.pid for info in await live_workers(redis, space=settings.keys)]
        os.kill(pool.pid, signal.SIGKILL)  # the supervisor alone: its workers run in sessions of their own
        pool.wait()
        deadline = time.monotonic() + 15
        while await live_workers(redis, space=settings.keys):  # a clean stop removes the heartbeat
            assert time.monotonic() < deadline, "the workers outlived their supervisor"
            await asyncio.sleep(0.1)
        while any(_running(pid) for pid in children):
            assert time.monotonic() < deadline, "the workers' processes did not exit"
            await asyncio.sleep(0.1)
    finally:
        stop(pool)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its new parent to reap it has exited)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
