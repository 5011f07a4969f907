"""taskemit's worker loop, in-process on a real Redis: routing by listener and queue, wake on
work, leases around sync listeners, graceful stop, batched finishes, what Redis holds never
stopping the worker."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from typing import Any

import pytest
from arq_support import HAVE_ARQ, needs_arq
from redis import asyncio as aioredis

from taskemit import Attempt, Emitter, Retry, listener
from taskemit.engine import Engine, InProcessWorker
from taskemit.errors import InvalidArgument, ListenerConfigError, ListenerError
from taskemit.monitor import event_status
from taskemit.monitor.deadletter import get_dead_letter
from taskemit.monitor.stats import read_listener_stats
from taskemit.monitor.workers import live_workers, waiting_listeners
from taskemit.settings import Settings
from taskemit.store.arq_format import decode_result

if HAVE_ARQ:
    from arq.jobs import Job, JobStatus

runs: defaultdict[str, list[Any]] = defaultdict(list)


@pytest.fixture(autouse=True)
def _reset() -> None:
    runs.clear()


@listener("invoice_paid", queue="billing")
async def charge(invoice: int) -> None:
    runs["charge"].append(invoice)


@listener("invoice_paid")
async def thank(invoice: int) -> None:
    runs["thank"].append(invoice)


@listener("tick")
async def count_tick(n: int, attempt: Attempt) -> None:
    runs["tick"].append((n, attempt.number))


@listener("flaky", backoff=None)
async def retry_soon(attempt: Attempt) -> None:
    runs["flaky"].append((attempt.number, time.monotonic()))
    if attempt.number == 1:
        raise Retry(after=0.3)


@listener("sync_slow", timeout=0.3, max_tries=2)
def sync_overrun(seconds: float) -> None:
    start = time.monotonic()
    runs["sync_start"].append((start, threading.get_ident()))
    time.sleep(seconds)
    runs["sync_end"].append(time.monotonic())


@listener("long")
async def long_running(attempt: Attempt) -> None:
    runs["long"].append(attempt.number)
    await asyncio.sleep(30)


@listener("exits", max_tries=3)
async def exits() -> None:
    runs["exits"].append(1)
    raise SystemExit(3)


@pytest.fixture
def settings(taskemit_settings: Settings) -> Settings:
    return taskemit_settings.model_copy(update={"drain_on_exit": False})


async def until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout}s: {dict(runs)}")
        await asyncio.sleep(0.01)


async def test_listener_queue_is_validated_at_decoration() -> None:
    with pytest.raises(ListenerConfigError, match="queue"):
        listener("x", queue="has space")(thank.fn)
    with pytest.raises(ListenerConfigError, match="queue"):
        listener("x", queue="")(thank.fn)


async def test_named_queue_jobs_go_to_their_queue_and_only_its_workers_run_them(
    settings: Settings, redis: aioredis.Redis
) -> None:
    async with Emitter([charge, thank], settings) as emitter:
        receipt = await emitter.publish("invoice_paid", 7)
    assert receipt is not None
    billing = settings.keys.queue("billing")
    assert await redis.zscore(billing, receipt.jobs[charge.name]) is not None
    assert await redis.zscore(settings.queue_key, receipt.jobs[thank.name]) is not None
    # a worker told to serve only the default queue runs thank, never charge
    async with InProcessWorker([charge, thank], settings, queues=["default"]):
        await until(lambda: runs["thank"] == [7])
        await asyncio.sleep(0.2)
        status = await event_status(redis, settings, receipt.event_uuid)
        assert status is not None
        by_listener = {job.listener: job for job in status.jobs}
        assert by_listener[charge.name].status == "queued"  # found on its own queue
        assert by_listener[charge.name].note == f"waiting: no live worker serves listener {charge.name}"
        assert by_listener[thank.name].status == "complete" and by_listener[thank.name].note is None
        (waiting,) = await waiting_listeners(redis, space=settings.keys)
        assert (waiting.listener, waiting.queue, waiting.jobs) == (charge.name, "billing", 1)
    assert runs["charge"] == []
    async with InProcessWorker([charge], settings) as worker:
        await until(lambda: runs["charge"] == [7])
        # the job may be done before the worker's first heartbeat is written: wait for that too
        for _ in range(500):
            if found := await live_workers(redis, space=settings.keys):
                break
            await asyncio.sleep(0.01)
        (info,) = found
        assert info.worker_id == worker.worker_id
        assert info.listeners == [charge.name] and info.queues == ["billing"]
    assert await waiting_listeners(redis, space=settings.keys) == []


async def test_queues_that_match_no_listener_are_refused(settings: Settings) -> None:
    with pytest.raises(InvalidArgument, match="none of the listeners"):
        Engine([thank], settings, queues=["billing"])


async def test_an_emit_wakes_an_idle_worker_without_polling(settings: Settings) -> None:
    # the safety-net poll is a minute away: only the emit's wake-up can start the job in time
    slow_poll = settings.model_copy(update={"idle_poll": 60.0})
    async with InProcessWorker([count_tick], slow_poll):
        await asyncio.sleep(0.3)  # the worker is idle, waiting
        async with Emitter([count_tick], slow_poll) as emitter:
            emitter.emit("tick", 1)
            await until(lambda: runs["tick"] == [(1, 1)], timeout=5)


async def test_a_retry_due_later_wakes_the_worker_at_its_time(settings: Settings) -> None:
    slow_poll = settings.model_copy(update={"idle_poll": 60.0})
    async with InProcessWorker([retry_soon], slow_poll):
        async with Emitter([retry_soon], slow_poll) as emitter:
            emitter.emit("flaky")
        await until(lambda: len(runs["flaky"]) == 2, timeout=5)
    (first, t1), (second, t2) = runs["flaky"]
    assert (first, second) == (1, 2)
    assert t2 - t1 >= 0.29  # not before its time


async def test_many_jobs_run_once_each_and_counters_add_up(settings: Settings, redis: aioredis.Redis) -> None:
    async with Emitter([count_tick], settings) as emitter:
        for n in range(500):
            emitter.emit("tick", n)
        await emitter.publish("tick", 500)
    async with InProcessWorker([count_tick], settings, concurrency=40):
        await until(lambda: len(runs["tick"]) >= 501)
        await asyncio.sleep(0.2)
        (stats,) = await read_listener_stats(redis, space=settings.keys)
    assert sorted(runs["tick"]) == [(n, 1) for n in range(501)]
    assert (stats.succeeded, stats.failed, stats.duration_count) == (501, 0, 501)
    assert sum(stats.buckets.values()) == 501
    # every job settled: payloads deleted, queue and sets empty
    queue = settings.queue_key
    assert await redis.zcard(queue) == 0
    assert await redis.zcard(settings.keys.ready(queue, count_tick.name)) == 0
    assert await redis.zcard(settings.keys.leased(queue, count_tick.name)) == 0


async def test_a_sync_listener_past_its_timeout_keeps_its_lease_until_its_thread_returns(
    settings: Settings, redis: aioredis.Redis
) -> None:
    # the thread runs 2.4 s, past its 0.3 s timeout and past the 2 s lease: two workers
    # compete, and the retry must not start before the first thread has returned
    short = settings.model_copy(update={"lease_ttl": 2.0})
    async with Emitter([sync_overrun], short) as emitter:
        receipt = await emitter.publish("sync_slow", 2.4)
    assert receipt is not None
    job_id = receipt.jobs[sync_overrun.name]
    async with InProcessWorker([sync_overrun], short), InProcessWorker([sync_overrun], short):
        await until(lambda: len(runs["sync_start"]) == 1)
        await asyncio.sleep(1.0)  # past the timeout: the lease is still held
        assert await redis.exists(short.keys.in_progress(job_id))
        await until(lambda: len(runs["sync_end"]) == 2, timeout=15)
    (_, _), (second_start, _) = runs["sync_start"]
    first_end = runs["sync_end"][0]
    assert second_start >= first_end  # never two runs at once
    letter = await get_dead_letter(redis, job_id, space=short.keys)
    assert letter is not None and letter.error["type"] == "taskemit.errors.ListenerTimeout"
    assert [a["attempt"] for a in letter.attempts] == [1, 2]


async def test_a_stopping_worker_gives_running_jobs_back_without_counting_the_attempt(
    settings: Settings, redis: aioredis.Redis
) -> None:
    async with Emitter([long_running], settings) as emitter:
        receipt = await emitter.publish("long")
    assert receipt is not None
    job_id = receipt.jobs[long_running.name]
    async with InProcessWorker([long_running], settings, grace=0.2):
        await until(lambda: runs["long"] == [1])
    # given back at once: no lease, ready again, no try counted (arq's counter counts tries that ended)
    assert not await redis.exists(settings.keys.in_progress(job_id))
    assert await redis.zscore(settings.keys.ready(settings.queue_key, long_running.name), job_id) is not None
    assert await redis.get(settings.keys.retry(job_id)) is None
    async with InProcessWorker([long_running], settings, grace=0.2):
        await until(lambda: len(runs["long"]) == 2, timeout=5)
    assert runs["long"] == [1, 1]  # the interrupted attempt was not counted


async def test_a_listener_raising_system_exit_is_dead_lettered_and_the_worker_goes_on(
    settings: Settings, redis: aioredis.Redis
) -> None:
    async with Emitter([exits, count_tick], settings) as emitter:
        receipt = await emitter.publish("exits")
    assert receipt is not None
    async with InProcessWorker([exits, count_tick], settings) as worker:
        await until(lambda: runs["exits"] == [1])
        async with Emitter([exits, count_tick], settings) as emitter:
            emitter.emit("tick", 5)
        await until(lambda: runs["tick"] == [(5, 1)])
        assert worker.running
    letter = await get_dead_letter(redis, receipt.jobs[exits.name], space=settings.keys)
    assert letter is not None and letter.error["type"] == "builtins.SystemExit"
    assert runs["exits"] == [1]  # not an Exception: not retried
    # the job's history holds its one attempt once (the dead letter and the finish both wrote it)
    history = await redis.lrange(settings.keys.attempts(receipt.jobs[exits.name]), 0, -1)
    assert [json.loads(item)["attempt"] for item in history] == [1]
    assert [attempt["attempt"] for attempt in letter.attempts] == [1]


@pytest.mark.parametrize(
    "payload",
    [
        b'{"t":"x","f":"f","a":[],"k":{},"et":1}',
        b'{"t":1,"f":"f","a":[],"k":{},"et":"soon"}',
        b'{"t":1,"f":"f","a":{},"k":{},"et":1}',
        b'{"t":1,"f":"f","a":[],"k":[],"et":1}',
        b"[1, 2]",
        b"\xff\xfe",
    ],
)
async def test_a_malformed_job_is_dead_lettered_and_the_worker_goes_on(
    settings: Settings, redis: aioredis.Redis, payload: bytes
) -> None:
    space, queue = settings.keys, settings.queue_key
    bad = space.job_id("bad")
    await redis.set(space.job(bad), payload, px=60_000)
    for key in (queue, space.ready(queue, count_tick.name)):
        await redis.zadd(key, {bad: int(time.time() * 1000)})
    async with InProcessWorker([count_tick], settings) as worker:
        for _ in range(300):
            if letter := await get_dead_letter(redis, bad, space=space):
                break
            await asyncio.sleep(0.02)
        async with Emitter([count_tick], settings) as emitter:
            emitter.emit("tick", 9)
        await until(lambda: runs["tick"] == [(9, 1)])
        assert worker.running
    assert letter is not None and letter.reason == "undecodable payload"
    assert letter.payload == payload
    assert await redis.zcard(queue) == 0


async def test_an_expired_job_is_dead_lettered(settings: Settings, redis: aioredis.Redis) -> None:
    async with Emitter([count_tick], settings) as emitter:
        receipt = await emitter.publish("tick", 1)
    assert receipt is not None
    job_id = receipt.jobs[count_tick.name]
    await redis.delete(settings.keys.job(job_id))  # what job_expiry does to a job nobody took
    async with InProcessWorker([count_tick], settings):
        for _ in range(300):
            if letter := await get_dead_letter(redis, job_id, space=settings.keys):
                break
            await asyncio.sleep(0.02)
    assert letter is not None and letter.reason == "expired"
    assert runs["tick"] == []


async def test_arq_results_are_written_only_when_the_setting_asks_for_them(
    settings: Settings, redis: aioredis.Redis
) -> None:
    from taskemit.monitor import abort_job

    for arq_results in (False, True):
        asked = settings.model_copy(update={"arq_results": arq_results})
        async with Emitter([count_tick], asked) as emitter:
            ran = await emitter.publish("tick", 1)
            aborted = await emitter.publish("tick", 2)
        assert ran is not None and aborted is not None
        aborted_id = aborted.jobs[count_tick.name]
        assert await abort_job(redis, asked, aborted_id) == "aborted"
        async with InProcessWorker([count_tick], asked):
            status = await ran.wait(timeout=10)
        ran_id = ran.jobs[count_tick.name]
        # the outcome is on the event record either way; arq's copy only when asked for
        assert status.jobs[0].status == "complete"
        assert (await aborted.status()).jobs[0].status == "aborted"  # type: ignore[union-attr]
        assert bool(await redis.exists(asked.keys.result(ran_id))) is arq_results
        assert await redis.exists(asked.keys.result(aborted_id))  # an abort (rare) writes it either way
    assert runs["tick"] == [(1, 1), (1, 1)]


async def test_a_first_try_success_is_recorded_on_its_event_and_found_by_its_job_id(
    settings: Settings, redis: aioredis.Redis
) -> None:
    from taskemit.monitor import job_status

    settings = settings.model_copy(update={"arq_results": True})  # a finished job is found by its id through it
    async with Emitter([count_tick, retry_soon], settings) as emitter:
        ok = await emitter.publish("tick", 1)
        flaky = await emitter.publish("flaky")
    assert ok is not None and flaky is not None
    async with InProcessWorker([count_tick, retry_soon], settings):
        await ok.wait(timeout=10)
        await flaky.wait(timeout=10)
    job_id = ok.jobs[count_tick.name]
    assert not await redis.exists(settings.keys.attempts(job_id))  # no history to keep
    job = await job_status(redis, settings, job_id)  # found through arq's result
    assert (job.status, job.attempts, job.event_uuid) == ("complete", 1, ok.event_uuid)
    assert job.worker and job.started and job.finished
    # a job that failed once keeps its whole history
    flaky_id = flaky.jobs[retry_soon.name]
    history = [json.loads(entry) for entry in await redis.lrange(settings.keys.attempts(flaky_id), 0, -1)]
    assert [(entry["attempt"], entry["status"]) for entry in history] == [(1, "failed"), (2, "complete")]


@listener("blocks")
async def blocks_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # the mistake this guards against: a blocking call in an async listener
    runs["blocks"].append(seconds)


async def test_a_blocked_event_loop_is_reported_naming_the_listener(
    settings: Settings, redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    touchy = settings.model_copy(update={"loop_lag_warning": 0.5})
    async with Emitter([blocks_the_loop], touchy) as emitter:
        emitter.emit("blocks", 1.5)  # blocked at least 1.0 s past the probe's half-second nap
    async with InProcessWorker([blocks_the_loop], touchy):
        await until(lambda: runs["blocks"] == [1.5])
        await asyncio.sleep(0.8)  # the probe wakes up late once, then measures
        warnings = [r.getMessage() for r in caplog.records if "event loop was blocked" in r.getMessage()]
        assert warnings and blocks_the_loop.name in warnings[0]
        assert float(warnings[0].split("blocked for ")[1].split("s")[0]) >= 0.9


async def test_abort_settles_a_waiting_job_at_once_and_cancels_a_running_one(
    settings: Settings, redis: aioredis.Redis
) -> None:
    from taskemit.monitor import abort_job
    from taskemit.store.codec import get_codec

    # renewals, and so abort checks, every 2/3 s; arq's results, read below
    short = settings.model_copy(update={"lease_ttl": 2.0, "arq_results": True})
    async with Emitter([long_running, count_tick], short) as emitter:
        waiting = await emitter.publish("tick", 1)
        running = await emitter.publish("long")
    assert waiting is not None and running is not None
    waiting_id = waiting.jobs[count_tick.name]
    assert await abort_job(redis, short, waiting_id) == "aborted"
    assert (await waiting.status()).jobs[0].status == "aborted"  # type: ignore[union-attr]
    async with InProcessWorker([long_running, count_tick], short):
        await until(lambda: runs["long"] == [1])
        running_id = running.jobs[long_running.name]
        assert await abort_job(redis, short, running_id) == "requested"
        status = await running.wait(timeout=10)
    assert status.jobs[0].status == "aborted"
    assert runs["tick"] == [] and runs["long"] == [1]  # not run, not retried
    assert await get_dead_letter(redis, running_id, space=short.keys) is None
    assert await abort_job(redis, short, running_id) == "missing"
    # arq's result says so (what arq's Job API reads: test_arqs_job_api_sees_an_aborted_job)
    result = decode_result(await redis.get(short.keys.result(running_id)), get_codec("json").loads)
    assert result.success is False and isinstance(result.result, ListenerError)
    assert result.result.type_name.endswith("CancelledError")


@needs_arq
async def test_arqs_job_abort_is_honoured_by_taskemits_worker(settings: Settings, redis: aioredis.Redis) -> None:
    from arq.connections import ArqRedis

    from taskemit.store.codec import get_codec

    # renewals, and so abort checks, every 2/3 s; arq's results, which Job.abort() waits for
    short = settings.model_copy(update={"lease_ttl": 2.0, "arq_results": True})
    async with Emitter([long_running, count_tick], short) as emitter:
        waiting = await emitter.publish("tick", 2)
    assert waiting is not None
    arq_redis = ArqRedis.from_url(short.redis_url)
    try:
        loads = get_codec("json").loads
        queued = Job(waiting.jobs[count_tick.name], arq_redis, _queue_name=short.queue_key, _deserializer=loads)
        # arq's own call writes arq's abort set, then polls for the result: no worker runs yet
        with pytest.raises(asyncio.TimeoutError):
            await queued.abort(timeout=0.3, poll_delay=0.1)
        async with InProcessWorker([long_running, count_tick], short):
            assert (await waiting.wait(timeout=10)).jobs[0].status == "aborted"  # settled, not run
            async with Emitter([long_running], short) as emitter:
                running = await emitter.publish("long")
            assert running is not None
            await until(lambda: runs["long"] == [1])
            held = Job(running.jobs[long_running.name], arq_redis, _queue_name=short.queue_key, _deserializer=loads)
            # a running job is cancelled; arq's Job raises the stored error of a failed job
            with pytest.raises(ListenerError, match="CancelledError: aborted on request"):
                await held.abort(timeout=20, poll_delay=0.1)
            assert (await running.wait(timeout=10)).jobs[0].status == "aborted"
    finally:
        await arq_redis.aclose()
    assert runs["tick"] == [] and runs["long"] == [1]  # the waiting one not run, the running one not retried


@needs_arq
async def test_arqs_job_api_sees_an_aborted_job(settings: Settings, redis: aioredis.Redis) -> None:
    from taskemit.monitor import abort_job
    from taskemit.store.codec import get_codec

    settings = settings.model_copy(update={"arq_results": True})  # what arq's Job API reads
    async with Emitter([count_tick], settings) as emitter:
        waiting = await emitter.publish("tick", 1)
    assert waiting is not None
    job_id = waiting.jobs[count_tick.name]
    assert await abort_job(redis, settings, job_id) == "aborted"
    job = Job(job_id, redis, _queue_name=settings.queue_key, _deserializer=get_codec("json").loads)
    assert await job.status() == JobStatus.complete
    info = await job.result_info()
    assert info is not None and info.success is False and info.function == count_tick.name
