"""The monitor functions the dashboard reads: queue depth per queue, a time window on the
event listing, a job's attempt history, and an event read while its job finishes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from redis import asyncio as aioredis

from taskemit import Attempt, Backoff, Emitter, listener
from taskemit.engine import InProcessWorker
from taskemit.monitor import QueueView, event_status, job_attempts, queue_depths, recent_events
from taskemit.settings import Settings
from taskemit.testing import run_until_finished

started = asyncio.Event()
release = asyncio.Event()


@listener("report_due", name="reports:build", queue="reports")
async def build_report(n: int) -> None:
    started.set()
    await release.wait()


@listener("mail_due", name="mail:send")
async def send_mail(n: int) -> None: ...


@listener("flaky", name="flaky:call", max_tries=2, backoff=Backoff.fixed(0.05))
async def flaky(n: int, attempt: Attempt) -> None:
    if attempt.number == 1:
        raise ConnectionError("first try fails")


async def test_queue_depths_counts_queued_delayed_and_running_per_queue(
    redis: aioredis.Redis, taskemit_settings: Settings
) -> None:
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False})
    started.clear()
    release.clear()
    async with Emitter([build_report, send_mail], settings) as emitter:
        for n in range(3):
            await emitter.publish("report_due", n=n)
        await emitter.publish("mail_due", n=1)
        # a delayed job: due in an hour
        await redis.zadd(settings.keys.ready(settings.queue_key, send_mail.name), {"later": time.time() * 1000 + 3.6e6})
    assert await queue_depths(redis, settings) == [
        QueueView("default", queued=1, running=0, delayed=1, listeners=1, workers=0),
        QueueView("reports", queued=3, running=0, delayed=0, listeners=1, workers=0),
    ]
    async with InProcessWorker([build_report], settings, queues=["reports"], concurrency=1):
        try:
            await asyncio.wait_for(started.wait(), 10)
            while (depths := {view.queue: view for view in await queue_depths(redis, settings)})[
                "reports"
            ].workers == 0:
                await asyncio.sleep(0.01)  # its first heartbeat
            assert depths["reports"] == QueueView("reports", queued=2, running=1, delayed=0, listeners=1, workers=1)
            assert depths["default"].workers == 0
        finally:
            release.set()
    assert QueueView("x", 1, 2, 3, 4, 5).to_dict() == {
        "queue": "x",
        "queued": 1,
        "running": 2,
        "delayed": 3,
        "listeners": 4,
        "workers": 5,
    }


async def test_recent_events_between_two_times(redis: aioredis.Redis, taskemit_settings: Settings) -> None:
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False})
    receipts = []
    async with Emitter([send_mail], settings) as emitter:
        for n in range(4):
            receipts.append(await emitter.publish("mail_due", n=n))
            await asyncio.sleep(0.01)
    assert all(receipts)
    emitted = [(await r.status()).emitted_at for r in receipts]  # type: ignore[union-attr]
    page = await recent_events(redis, settings, since=emitted[1], until=emitted[2])
    assert [e.event_uuid for e in page.items] == [receipts[2].event_uuid, receipts[1].event_uuid]  # type: ignore[union-attr]
    page = await recent_events(redis, settings, since=emitted[1], limit=1)
    assert [e.event_uuid for e in page.items] == [receipts[3].event_uuid]  # type: ignore[union-attr]
    following = await recent_events(redis, settings, since=emitted[1], limit=5, cursor=page.next_cursor)
    assert [e.event_uuid for e in following.items] == [receipts[2].event_uuid, receipts[1].event_uuid]  # type: ignore[union-attr]
    assert (await recent_events(redis, settings, until=emitted[0] - 1)).items == []


async def test_job_attempts_reads_each_jobs_history(redis: aioredis.Redis, taskemit_settings: Settings) -> None:
    async with Emitter([flaky, send_mail], taskemit_settings) as emitter:
        retried = await emitter.publish("flaky", n=1)
        once = await emitter.publish("mail_due", n=1)
    assert retried and once
    history = await job_attempts(
        redis, [retried.jobs[flaky.name], once.jobs[send_mail.name]], space=taskemit_settings.keys
    )
    first, second = history[retried.jobs[flaky.name]]
    assert (first["attempt"], first["status"], first["error"]["message"]) == (1, "failed", "first try fails")
    assert (second["attempt"], second["status"]) == (2, "complete")
    assert history[once.jobs[send_mail.name]] == []  # a first try that succeeded keeps no history


class _FinishesBetweenReads:
    """A client on which ``finish`` runs right after the first pipeline: between the two round trips
    of ``event_statuses`` (the event record, then the jobs' live keys)."""

    def __init__(self, redis: aioredis.Redis, finish: Any) -> None:
        self._redis, self._finish, self._reads = redis, finish, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._redis, name)

    @contextlib.asynccontextmanager
    async def pipeline(self, **options: Any) -> AsyncIterator[Any]:
        async with self._redis.pipeline(**options) as pipe:
            execute = pipe.execute

            async def then_finish() -> Any:
                replies = await execute()
                self._reads += 1
                if self._reads == 1:
                    await self._finish()
                return replies

            pipe.execute = then_finish
            yield pipe


async def test_a_job_that_finishes_while_its_event_is_read_has_its_outcome(
    redis: aioredis.Redis, taskemit_settings: Settings
) -> None:
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False})
    async with Emitter([send_mail], settings) as emitter:
        receipt = await emitter.publish("mail_due", n=1)
    assert receipt is not None
    job_id = receipt.jobs[send_mail.name]

    async def finish() -> None:
        await run_until_finished(redis, [job_id], [send_mail], settings, timeout=10)

    event = await event_status(_FinishesBetweenReads(redis, finish), settings, receipt.event_uuid)
    assert event is not None
    (job,) = event.jobs
    # the worker's outcome, not only arq's result: which worker, the listener's policy
    assert (job.status, job.max_tries) == ("complete", settings.max_tries) and job.worker
