"""Soak/chaos: a supervised worker pool keeps every event's side effects while its workers are killed.

Marked slow (about a minute); run with ``python -m pytest -m slow``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soak_listeners
from children import PROTOCOL_ENV
from redis import asyncio as aioredis

from taskemit import Emitter
from taskemit.monitor import live_workers
from taskemit.settings import Settings

pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parent
EVENTS = 3000


async def test_pool_survives_killed_workers_without_losing_side_effects(
    taskemit_settings: Settings, redis: aioredis.Redis, tmp_path: Path
) -> None:
    # a short job timeout: arq hands a dead worker's jobs to another once it passes (plus 10 s)
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False, "job_timeout": 3.0})
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKEMIT_") or k == PROTOCOL_ENV}
    env.update(
        TASKEMIT_REDIS_URL=settings.redis_url,
        TASKEMIT_NAMESPACE=settings.namespace,
        TASKEMIT_JOB_TIMEOUT="3",
        PYTHONPATH=os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]),
    )
    log = (tmp_path / "pool.log").open("wb")
    pool = subprocess.Popen(
        [sys.executable, "-m", "taskemit", "worker", "soak_listeners:WorkerSettings", "-p", "3"],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    killed = 0
    try:
        async with Emitter(soak_listeners.WorkerSettings.taskemit_listeners, settings) as emitter:
            for order in range(EVENTS):
                emitter.emit("order_placed", order)
                if order % 500 == 499:
                    await emitter.publish("order_placed", -order)  # backpressure
                    # SIGKILL one worker process mid-run, as an OOM kill would (a heartbeat can
                    # outlive its process by a few seconds: skip the ones already gone)
                    for worker in await live_workers(redis, settings.queue_name, space=settings.keys):
                        try:
                            os.kill(worker.pid, signal.SIGKILL)
                        except ProcessLookupError:
                            continue
                        killed += 1
                        break
                await asyncio.sleep(0.002)
        deadline = time.monotonic() + 90
        expected = EVENTS + EVENTS // 500
        while time.monotonic() < deadline:
            reserved, receipts = await redis.scard("soak:reserved"), await redis.scard("soak:receipts")
            if reserved == receipts == expected:
                break
            await asyncio.sleep(0.5)
        assert (reserved, receipts) == (expected, expected), (tmp_path / "pool.log").read_text()[-3000:]
        assert killed >= 3
        assert (tmp_path / "pool.log").read_bytes().count(b"restarting") >= 3
    finally:
        pool.send_signal(signal.SIGTERM)
        pool.wait(60)
        log.close()
    assert pool.returncode == 0
