"""Leases, with real worker processes: a killed worker's job comes back within the lease, a long
listener on a live worker is never started twice, and stock arq workers respect the lease."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import lease_listeners
import pytest
from arq_support import needs_arq
from children import TESTS, child_env, served_by, stop
from redis import asyncio as aioredis

from taskemit import Emitter
from taskemit.settings import Settings

LISTENERS = [lease_listeners.slow, lease_listeners.quick]


def start_worker(settings: Settings, lease: float, *command: str) -> subprocess.Popen[bytes]:
    command = command or (sys.executable, "-m", "taskemit", "worker", "lease_listeners:WorkerSettings")
    return subprocess.Popen(
        list(command),
        env=child_env(settings, TASKEMIT_LEASE_TTL=str(lease)),
        cwd=TESTS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def wait_for_len(redis: aioredis.Redis, key: str, count: int, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = [item.decode() for item in await redis.lrange(key, 0, -1)]
        if len(items) >= count:
            return items
        await asyncio.sleep(0.05)
    raise AssertionError(f"{key}: {await redis.llen(key)} of {count} entries after {timeout}s")


async def wait_for_key(redis: aioredis.Redis, key: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await redis.exists(key):
        assert time.monotonic() < deadline, f"{key} not written after {timeout}s"
        await asyncio.sleep(0.05)


@pytest.fixture
def settings(taskemit_settings: Settings) -> Settings:
    return taskemit_settings.model_copy(update={"drain_on_exit": False})


async def test_a_killed_workers_job_runs_again_within_the_lease(settings: Settings, redis: aioredis.Redis) -> None:
    lease = 3.0
    async with Emitter(LISTENERS, settings) as emitter:
        await emitter.publish("lease_slow", 30.0)
    first = start_worker(settings, lease)
    second = None
    try:
        (started,) = await wait_for_len(redis, "lease:starts", 1, timeout=30)
        assert started.startswith(f"{first.pid}:") and started.endswith(":1")
        stop(first)  # SIGKILL mid-listener: the lease is not renewed any more
        killed_at = time.time()
        second = start_worker(settings, lease)
        starts = await wait_for_len(redis, "lease:starts", 2, timeout=60)
        pid, at, number = starts[1].split(":")
        assert int(pid) == second.pid
        # the bound is the feature: arq's own in-progress TTL would hold the job for the job timeout
        # + 10 s = 130 s here; the lease (3 s), plus a new worker process starting on a loaded
        # machine, stays far inside 45 s
        assert float(at) - killed_at < 45
        assert number == "2"  # the killed worker's try counts (a poison job runs out of tries)
    finally:
        stop(first, *([second] if second else []))


async def test_a_listener_longer_than_the_lease_runs_once(settings: Settings, redis: aioredis.Redis) -> None:
    lease = 2.0
    workers = [start_worker(settings, lease) for _ in range(2)]
    try:
        async with Emitter(LISTENERS, settings) as emitter:
            await emitter.publish("lease_slow", 3 * lease)
        await wait_for_len(redis, "lease:done", 1, timeout=40)
        await asyncio.sleep(lease)  # a second start would come after the first lease ran out
        assert await redis.llen("lease:starts") == 1
        assert await redis.llen("lease:done") == 1
    finally:
        stop(*workers)


@needs_arq
async def test_a_stock_arq_worker_shares_the_queue_and_no_job_runs_twice(
    settings: Settings, redis: aioredis.Redis
) -> None:
    # both workers are started and polling before the first emit; each runs at most max_jobs (100)
    # at a time and holds each job 2 s, so neither can take all 200 unless the other stalls for 2 s
    stock = start_worker(settings, 10.0, sys.executable, "-m", "arq", "lease_listeners.WorkerSettings")
    ours = start_worker(settings, 10.0)
    try:
        await served_by(redis, settings, lease_listeners.slow.name, timeout=30)  # ours: registered, claiming
        await wait_for_key(redis, settings.keys.health_check(settings.queue_name), timeout=30)  # arq: polling
        async with Emitter(LISTENERS, settings) as emitter:
            for _ in range(200):
                emitter.emit("lease_slow", 2.0)
        await wait_for_len(redis, "lease:done", 200, timeout=90)
        await asyncio.sleep(1.0)  # a job run twice would show now
        starts = [item.decode() for item in await redis.lrange("lease:starts", 0, -1)]
        assert len(starts) == 200  # each job once
        assert {int(start.split(":")[0]) for start in starts} == {stock.pid, ours.pid}  # both took jobs
    finally:
        stop(stock, ours)
