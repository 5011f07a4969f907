"""Smaller paths of taskemit's worker, in-process on a real Redis: a result the serializer cannot
store, a listener's own TimeoutError, listeners taking turns at each claim, and finished jobs that
cannot be written at shutdown because Redis is down."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from proxy import TcpProxy
from redis import asyncio as aioredis

from taskemit import Attempt, Emitter, listener
from taskemit.monitor.deadletter import get_dead_letter
from taskemit.settings import Settings
from taskemit.testing import InProcessWorker

runs: list[Any] = []
release = asyncio.Event()


@pytest.fixture(autouse=True)
def _reset() -> None:
    runs.clear()
    release.clear()


@pytest.fixture
def settings(taskemit_settings: Settings) -> Settings:
    return taskemit_settings.model_copy(update={"drain_on_exit": False})


async def until(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, runs
        await asyncio.sleep(0.02)


class Parcel:
    """Not JSON."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        return f"<Parcel {self.n}>"


@listener("parcel_packed")
async def pack(n: int) -> Parcel:
    return Parcel(n)


async def test_a_result_the_serializer_cannot_store_is_kept_as_its_repr(settings: Settings) -> None:
    async with InProcessWorker([pack], settings), Emitter([pack], settings) as emitter:
        receipt = await emitter.publish("parcel_packed", 7)
        assert receipt is not None
        (job,) = (await receipt.wait(timeout=20)).jobs
    assert job.status == "complete"  # the listener succeeded; only its result had no JSON form
    assert job.result == "<Parcel 7>"


@listener("quote_asked", timeout=60, max_tries=1)
async def ask_supplier(n: int) -> None:
    raise TimeoutError(f"supplier {n} did not answer")


async def test_a_listeners_own_timeout_error_is_its_error_not_a_listener_timeout(
    settings: Settings, redis: aioredis.Redis
) -> None:
    async with InProcessWorker([ask_supplier], settings), Emitter([ask_supplier], settings) as emitter:
        receipt = await emitter.publish("quote_asked", 3)
        assert receipt is not None
        (job,) = (await receipt.wait(timeout=20)).jobs
    assert job.status == "failed"
    dead = await get_dead_letter(redis, job.job_id, space=settings.keys)
    assert dead is not None
    assert (dead.error["type"], dead.error["message"]) == ("builtins.TimeoutError", "supplier 3 did not answer")


@listener("invoice_due")
async def remind(n: int) -> None:
    runs.append(("remind", n))


@listener("invoice_paid")
async def thank(n: int) -> None:
    runs.append(("thank", n))


async def test_listeners_take_turns_so_a_busy_one_does_not_starve_the_others(settings: Settings) -> None:
    async with Emitter([remind, thank], settings) as emitter:
        for n in range(20):  # all of one listener's jobs are queued before the other's
            await emitter.publish("invoice_due", n)
        for n in range(20):
            await emitter.publish("invoice_paid", n)
    # one job at a time: each claim takes one job, starting from the next listener in turn
    async with InProcessWorker([remind, thank], settings, max_jobs=1):
        await until(lambda: len(runs) == 40)
    first = [name for name, _ in runs[:10]]
    assert first.count("remind") >= 4 and first.count("thank") >= 4, runs


@listener("label_printed", max_tries=3)
async def print_label(n: int, attempt: Attempt) -> None:
    runs.append(("start", attempt.number))
    await release.wait()
    runs.append(("done", attempt.number))


async def test_finished_jobs_that_cannot_be_written_at_shutdown_are_logged_and_run_again(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="taskemit.worker")
    proxy = TcpProxy(int(settings.redis_url.rsplit(":", 1)[1].split("/")[0])).start()
    behind = settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{proxy.port}/0", "lease_ttl": 2.0, "redis_timeout": 0.5}
    )
    async with Emitter([print_label], settings) as emitter:
        receipt = await emitter.publish("label_printed", 1)
    assert receipt is not None
    try:
        async with InProcessWorker([print_label], behind):
            await until(lambda: runs == [("start", 1)])
            proxy.stop()  # Redis unreachable from the worker from now on
            release.set()  # the listener finishes; its outcome cannot be written
            await until(lambda: ("done", 1) in runs)
    finally:
        proxy.stop()
    assert "could not write 1 finished jobs or give back 0 leases before stopping" in caplog.text
    # as the log says: the lease runs out and the job runs again
    async with InProcessWorker([print_label], settings):
        (job,) = (await receipt.wait(timeout=30)).jobs
    assert job.status == "complete"
    assert runs == [("start", 1), ("done", 1), ("start", 2), ("done", 2)]
