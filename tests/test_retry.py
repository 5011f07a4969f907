"""Retries: per-listener policies run by a real worker against a real Redis."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict
from typing import Any

import pytest
from redis import asyncio as aioredis

from taskemit import Attempt, Backoff, Emitter, Retry, listener
from taskemit.monitor import event_status
from taskemit.monitor.deadletter import get_dead_letter, list_dead_letters, replay_dead_letter
from taskemit.settings import Settings
from taskemit.store.arq_format import decode_result
from taskemit.store.codec import get_codec
from taskemit.testing import InProcessWorker

runs: dict[str, list[float]] = defaultdict(list)
seen_attempts: list[Attempt] = []


class Flaky(Exception):
    pass


class Fatal(Exception):
    pass


@listener("flaky", max_tries=5, backoff=Backoff.exponential(first=0.2, factor=2, cap=5))
async def fails_twice(order: int) -> str:
    runs["fails_twice"].append(time.monotonic())
    if len(runs["fails_twice"]) <= 2:
        raise Flaky(f"attempt {len(runs['fails_twice'])} of order {order}")
    return "ok"


@listener("doomed", max_tries=3, backoff=Backoff.fixed(0.05))
async def always_fails(order: int) -> None:
    runs["always_fails"].append(time.monotonic())
    raise Flaky(f"run {len(runs['always_fails'])}")


@listener("doomed", backoff=Backoff.fixed(0.05))
async def sibling(order: int) -> None:
    runs["sibling"].append(time.monotonic())


@listener("fatal", max_tries=5, give_up_on=Fatal, backoff=Backoff.fixed(0.05))
async def gives_up(order: int) -> None:
    runs["gives_up"].append(time.monotonic())
    raise Fatal("no such customer")


@listener("narrow", max_tries=5, retry_on=(ConnectionError,), backoff=Backoff.fixed(0.05))
async def narrow(order: int) -> None:
    runs["narrow"].append(time.monotonic())
    raise ValueError("not a connection problem")


@listener("sleepy", max_tries=3, timeout=0.2, backoff=Backoff.fixed(0.05))
async def slow_then_fast(order: int) -> None:
    runs["slow_then_fast"].append(time.monotonic())
    if len(runs["slow_then_fast"]) == 1:
        await asyncio.sleep(3)


@listener("asks", max_tries=4, backoff=Backoff.fixed(30))
async def asks_for_retry(order: int, attempt: Attempt) -> None:
    runs["asks_for_retry"].append(time.monotonic())
    seen_attempts.append(attempt)
    if not attempt.is_last:
        raise Retry(after=0.1)


@listener("long", max_tries=4, backoff=Backoff.fixed(0.7))
async def long_backoff(order: int) -> None:
    runs["long_backoff"].append(time.monotonic())
    if len(runs["long_backoff"]) < 4:
        raise Flaky("not yet")


ALL = [fails_twice, always_fails, sibling, gives_up, narrow, slow_then_fast, asks_for_retry, long_backoff]


@pytest.fixture(autouse=True)
def _clear() -> None:
    runs.clear()
    seen_attempts.clear()


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


async def attempt_records(redis: aioredis.Redis, settings: Settings, job_id: str) -> list[dict[str, Any]]:
    """The attempts the worker recorded for a job, oldest first."""
    return [json.loads(record) for record in await redis.lrange(settings.keys.attempts(job_id), 0, -1)]


def assert_retried_after(records: list[dict[str, Any]], delays: list[float]) -> None:
    """Each failed attempt scheduled the next after exactly its delay, and the next did not start sooner.

    The worker takes the time (``t``) between the attempt's ``started`` and ``finished`` stamps and
    records ``next_attempt_at = t + delay``: the delay lies between ``next_attempt_at - finished``
    and ``next_attempt_at - started`` however slowly the machine runs. No upper bound on real waits.
    """
    assert [r["attempt"] for r in records] == list(range(1, len(delays) + 2))
    for (record, following), delay in zip(itertools.pairwise(records), delays, strict=True):
        assert record["status"] == "failed"
        assert record["next_attempt_at"] - record["finished"] <= delay <= record["next_attempt_at"] - record["started"]
        # arq keeps the due time in whole milliseconds
        assert following["started"] >= record["next_attempt_at"] - 0.001


async def test_fails_twice_then_succeeds_after_policy_delays(
    taskemit_settings: Settings, redis: aioredis.Redis
) -> None:
    async with Emitter(ALL, taskemit_settings) as emitter:
        receipt = await emitter.publish("flaky", 1)
    assert receipt is not None
    assert len(runs["fails_twice"]) == 3
    # exponential(first=0.2, factor=2): the second run came 0.2 s or more after the first, the third 0.4 s
    # or more after the second (how much more depends on the machine: no upper bound)
    first, second = gaps(runs["fails_twice"])
    assert first >= 0.2 - 0.001 and second >= 0.4 - 0.001
    record = await event_status(redis, taskemit_settings, receipt.event_uuid)
    assert record is not None
    (job,) = record.jobs
    assert job.status == "complete" and job.attempts == 3
    history = await attempt_records(redis, taskemit_settings, job.job_id)
    assert [a["status"] for a in history] == ["failed", "failed", "complete"]
    assert [a["error"]["message"] for a in history[:2]] == ["attempt 1 of order 1", "attempt 2 of order 1"]
    # the delays the policy asked for, exactly: 0.2 s, then 0.4 s (not 0.2 again, nor 0.8)
    assert_retried_after(history, [0.2, 0.4])
    assert await list_dead_letters(redis, space=taskemit_settings.keys) == type(
        await list_dead_letters(redis, space=taskemit_settings.keys)
    )([], None)


async def test_always_failing_listener_is_dead_lettered_and_replayable(
    taskemit_settings: Settings, redis: aioredis.Redis
) -> None:
    taskemit_settings = taskemit_settings.model_copy(update={"arq_results": True})  # arq's result is checked below
    async with Emitter(ALL, taskemit_settings) as emitter:
        receipt = await emitter.publish("doomed", 7)
    assert receipt is not None
    assert len(runs["always_fails"]) == 3
    # each listener is its own job: the sibling ran once and was never re-run
    assert len(runs["sibling"]) == 1
    job_id = receipt.jobs[always_fails.name]
    letter = await get_dead_letter(redis, job_id, space=taskemit_settings.keys)
    assert letter is not None
    assert letter.listener == always_fails.name and letter.event_id == "doomed"
    assert letter.event_uuid == receipt.event_uuid
    assert letter.reason == "attempts exhausted"
    assert [a["error"]["message"] for a in letter.attempts] == ["run 1", "run 2", "run 3"]
    assert all(a["error"]["type"].endswith("Flaky") and a["error"]["where"] for a in letter.attempts)
    assert letter.arguments() == ((7,), {})
    record = await event_status(redis, taskemit_settings, receipt.event_uuid)
    assert record is not None
    statuses = {job.listener: job.status for job in record.jobs}
    assert statuses == {always_fails.name: "failed", sibling.name: "complete"}
    # arq's result says failed too (what arq's Job API reads: test_worker's test_arqs_job_api_reads_a_failure)
    result = decode_result(await redis.get(taskemit_settings.keys.result(job_id)), get_codec("json").loads)
    assert (result.success, result.job_try, result.job_id) == (False, 3, job_id)

    new_job_id = await replay_dead_letter(redis, taskemit_settings, job_id)
    assert new_job_id is not None and new_job_id != job_id
    assert await get_dead_letter(redis, job_id, space=taskemit_settings.keys) is None
    async with InProcessWorker(ALL, taskemit_settings):
        for _ in range(300):
            if await get_dead_letter(redis, new_job_id, space=taskemit_settings.keys):
                break
            await asyncio.sleep(0.02)
    assert len(runs["always_fails"]) == 6  # a fresh attempt count: three more runs
    again = await get_dead_letter(redis, new_job_id, space=taskemit_settings.keys)
    assert again is not None
    # the history is kept: 3 old attempts, the replay marker, 3 new attempts
    assert [a["status"] for a in again.attempts] == ["failed"] * 3 + ["replayed"] + ["failed"] * 3
    record = await event_status(redis, taskemit_settings, receipt.event_uuid)
    assert record is not None and new_job_id in {job.job_id for job in record.jobs}
    assert len(runs["sibling"]) == 1


async def test_give_up_on_is_dead_at_once(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    async with Emitter(ALL, taskemit_settings) as emitter:
        receipt = await emitter.publish("fatal", 1)
    assert receipt is not None
    assert len(runs["gives_up"]) == 1
    letter = await get_dead_letter(redis, receipt.jobs[gives_up.name], space=taskemit_settings.keys)
    assert letter is not None and letter.reason == "gave up on Fatal"
    assert len(letter.attempts) == 1


async def test_retry_on_narrows_what_is_retried(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    async with Emitter(ALL, taskemit_settings) as emitter:
        receipt = await emitter.publish("narrow", 1)
    assert receipt is not None
    assert len(runs["narrow"]) == 1
    letter = await get_dead_letter(redis, receipt.jobs[narrow.name], space=taskemit_settings.keys)
    assert letter is not None and letter.reason == "ValueError is not in retry_on"


async def test_timeout_counts_as_an_attempt_and_is_retried(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    async with Emitter(ALL, taskemit_settings) as emitter:
        receipt = await emitter.publish("sleepy", 1)
    assert receipt is not None
    assert len(runs["slow_then_fast"]) == 2
    history = [
        json.loads(a)
        for a in await redis.lrange(taskemit_settings.keys.attempts(receipt.jobs[slow_then_fast.name]), 0, -1)
    ]
    assert history[0]["error"]["type"].endswith("ListenerTimeout")
    assert "timed out after 0.2s" in history[0]["error"]["message"]
    assert history[1]["status"] == "complete"


async def test_listener_sees_its_attempt_and_can_ask_for_a_retry(
    taskemit_settings: Settings, redis: aioredis.Redis
) -> None:
    async with Emitter(ALL, taskemit_settings) as emitter:
        receipt = await emitter.publish("asks", 3)
    assert receipt is not None
    assert [a.number for a in seen_attempts] == [1, 2, 3, 4]
    assert all(a.max_tries == 4 and a.event_uuid == receipt.event_uuid and a.event_id == "asks" for a in seen_attempts)
    assert {a.idempotency_key for a in seen_attempts} == {f"{receipt.event_uuid}:{asks_for_retry.name}"}
    assert [a.is_last for a in seen_attempts] == [False, False, False, True]
    # Retry(after=0.1) overrides the policy's 30 s: each retry was scheduled 0.1 s after the attempt
    history = await attempt_records(redis, taskemit_settings, receipt.jobs[asks_for_retry.name])
    assert [a["status"] for a in history] == ["failed", "failed", "failed", "complete"]
    assert_retried_after(history, [0.1, 0.1, 0.1])


async def test_backoff_longer_than_the_job_expiry_still_completes(
    taskemit_settings: Settings, redis: aioredis.Redis
) -> None:
    # jobs expire 1 s after their scheduled time; three waits of 0.7 s add up to 2.1 s
    settings = taskemit_settings.model_copy(update={"job_expiry": 1})
    async with Emitter(ALL, settings) as emitter:
        receipt = await emitter.publish("long", 1)
    assert receipt is not None
    assert len(runs["long_backoff"]) == 4
    record = await event_status(redis, settings, receipt.event_uuid)
    assert record is not None and record.jobs[0].status == "complete"


async def test_a_job_waits_for_a_worker_that_has_its_listener(
    taskemit_settings: Settings, redis: aioredis.Redis
) -> None:
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False})
    async with Emitter([always_fails, sibling], settings) as emitter:
        receipt = await emitter.publish("doomed", 1)
    assert receipt is not None
    job_id = receipt.jobs[always_fails.name]
    async with InProcessWorker([sibling], settings):  # runs sibling's job, leaves always_fails' alone
        for _ in range(300):
            if runs["sibling"]:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
    assert len(runs["sibling"]) == 1
    assert await get_dead_letter(redis, job_id, space=settings.keys) is None
    assert await redis.zscore(settings.queue_key, job_id) is not None  # still queued
    assert runs["always_fails"] == []
    # once a worker with the listener starts, it runs the job
    async with InProcessWorker([always_fails], settings):
        for _ in range(300):
            if len(runs["always_fails"]) == 3:
                break
            await asyncio.sleep(0.02)
    assert len(runs["always_fails"]) == 3


async def test_undecodable_payload_is_dead_lettered(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    broken = taskemit_settings.keys.job_id("broken")
    space, queue = taskemit_settings.keys, taskemit_settings.queue_key
    await redis.set(space.job(broken), b"\x80not json", px=60_000)
    for key in (queue, space.ready(queue, sibling.name)):  # where an emit puts a job of sibling
        await redis.zadd(key, {broken: int(time.time() * 1000)})
    async with InProcessWorker([sibling], taskemit_settings):
        for _ in range(300):
            if letter := await get_dead_letter(redis, broken, space=taskemit_settings.keys):
                break
            await asyncio.sleep(0.02)
    assert letter is not None and letter.reason == "undecodable payload"
    assert "cannot be run" in letter.error["message"]
    assert letter.payload == b"\x80not json"
