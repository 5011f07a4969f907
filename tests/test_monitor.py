"""Monitoring: statuses of events and jobs, listings, waiting, counters."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis import asyncio as aioredis

from taskemit import Backoff, Emitter, listener
from taskemit.monitor import event_status, job_status, recent_events
from taskemit.monitor.stats import quantile, read_listener_stats
from taskemit.settings import Settings
from taskemit.testing import InProcessWorker

gate = asyncio.Event()


@listener("order_placed")
async def quick(order: int) -> str:
    return f"order {order} ok"


@listener("order_placed", max_tries=2, backoff=Backoff.fixed(30))
async def flaky(order: int) -> None:
    if order % 2:
        raise ValueError(f"odd order {order}")


@listener("slow_event")
async def waits_for_gate(order: int) -> None:
    await gate.wait()


@listener("crash_event", max_tries=1)
async def fails(order: int) -> None:
    raise KeyError(order)


ALL = [quick, flaky, waits_for_gate, fails]


@pytest.fixture
def settings(taskemit_settings: Settings) -> Settings:
    return taskemit_settings.model_copy(update={"drain_on_exit": False})


async def test_statuses_follow_a_job_through_its_life(settings: Settings, redis: aioredis.Redis) -> None:
    gate.clear()
    async with Emitter(ALL, settings) as emitter:
        ok = await emitter.publish("order_placed", 2)
        retrying = await emitter.publish("order_placed", 3)
        slow = await emitter.publish("slow_event", 1)
    assert ok and retrying and slow
    queued = await event_status(redis, settings, ok.event_uuid)
    assert queued is not None and {j.status for j in queued.jobs} == {"queued"} and queued.status == "queued"

    async with InProcessWorker(ALL, settings):
        done = await ok.wait(timeout=10)
        assert done.status == "complete"
        assert {j.listener: j.status for j in done.jobs} == {quick.name: "complete", flaky.name: "complete"}
        result = next(j for j in done.jobs if j.listener == quick.name)
        assert result.result == "order 2 ok" and result.attempts == 1 and result.worker
        assert result.duration is not None and result.duration >= 0

        for _ in range(200):
            current = await event_status(redis, settings, slow.event_uuid)
            if current and current.jobs[0].status == "in_progress":
                break
            await asyncio.sleep(0.02)
        assert current is not None and current.status == "in_progress"
        gate.set()
        assert (await slow.wait(timeout=10)).status == "complete"

        for _ in range(200):
            event = await event_status(redis, settings, retrying.event_uuid)
            statuses = {j.listener: j.status for j in event.jobs} if event else {}
            if statuses.get(flaky.name) == "retrying":
                break
            await asyncio.sleep(0.02)
    assert statuses == {quick.name: "complete", flaky.name: "retrying"}
    assert event is not None and event.status == "retrying"
    job = await job_status(redis, settings, retrying.jobs[flaky.name])
    assert job.status == "retrying" and job.attempts == 1 and job.max_tries == 2
    assert job.error is not None and job.error["message"] == "odd order 3"
    assert job.next_attempt_at is not None and job.next_attempt_at > time.time() + 20
    with pytest.raises(TimeoutError, match="retrying"):
        await retrying.wait(timeout=0.2)


async def test_failed_job_and_unknown_ids(settings: Settings, redis: aioredis.Redis) -> None:
    async with Emitter(ALL, settings) as emitter:
        receipt = await emitter.publish("crash_event", 5)
    assert receipt is not None
    async with InProcessWorker(ALL, settings):
        event = await receipt.wait(timeout=10)
    assert event.status == "failed"
    job = await job_status(redis, settings, receipt.jobs[fails.name])
    assert job.status == "failed" and job.error is not None and job.error["type"] == "builtins.KeyError"
    assert (await job_status(redis, settings, "no-such-job")).status == "unknown"
    assert await event_status(redis, settings, "no-such-event") is None


async def test_recent_events_pages_and_filters(settings: Settings, redis: aioredis.Redis) -> None:
    async with Emitter(ALL, settings) as emitter:
        published = []
        for n in range(7):
            published.append(await emitter.publish("order_placed", n * 2))
            published.append(await emitter.publish("crash_event", n))
    newest_first = [r.event_uuid for r in reversed(published) if r]
    seen: list[str] = []
    times: list[float] = []
    cursor = None
    while True:
        page = await recent_events(redis, settings, limit=3, cursor=cursor)
        seen += [e.event_uuid for e in page.items]
        times += [e.emitted_at for e in page.items]
        if not page.items or page.next_cursor is None:
            break
        cursor = page.next_cursor
    # every event exactly once across pages, newest first (events of the same millisecond in any order)
    assert sorted(seen) == sorted(newest_first) and len(seen) == len(set(seen))
    assert times == sorted(times, reverse=True)
    crashes = await recent_events(redis, settings, event_id="crash_event", limit=100)
    assert sorted(e.event_uuid for e in crashes.items) == sorted(r.event_uuid for r in published[1::2] if r)
    async with InProcessWorker(ALL, settings):
        for receipt in published:
            assert receipt is not None
            await receipt.wait(timeout=10)
    failed = await recent_events(redis, settings, status="failed", limit=100)
    assert {e.event_id for e in failed.items} == {"crash_event"} and len(failed.items) == 7


async def test_event_records_expire(settings: Settings, redis: aioredis.Redis) -> None:
    short = settings.model_copy(update={"event_retention": 2})
    async with Emitter(ALL, short) as emitter:
        receipt = await emitter.publish("order_placed", 2)
    assert receipt is not None and await event_status(redis, short, receipt.event_uuid) is not None
    assert 0 < await redis.ttl(short.keys.event(receipt.event_uuid)) <= 2
    deadline = time.monotonic() + 20
    while await event_status(redis, short, receipt.event_uuid) is not None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)


async def test_counters_are_recorded_with_each_attempt(settings: Settings, redis: aioredis.Redis) -> None:
    async with Emitter(ALL, settings) as emitter:
        receipts = [await emitter.publish("order_placed", n) for n in (2, 4, 6)]
        receipts.append(await emitter.publish("crash_event", 1))
    async with InProcessWorker(ALL, settings):
        for receipt in receipts:
            assert receipt is not None
            await receipt.wait(timeout=10)
    stats = {s.listener: s for s in await read_listener_stats(redis, space=settings.keys)}
    assert stats[quick.name].succeeded == 3 and stats[quick.name].failed == 0
    assert stats[quick.name].duration_count == 3 and sum(stats[quick.name].buckets.values()) == 3
    assert stats[fails.name].failed == 1 and stats[fails.name].dead == 1 and stats[fails.name].succeeded == 0
    assert stats[quick.name].succeeded_rate == pytest.approx(3 / 300)
    # the median is read from the recorded durations' buckets (how fast a run was is no test's business)
    assert stats[quick.name].p50 is not None and stats[quick.name].p50 > 0
    assert stats[quick.name].p50 == pytest.approx(quantile(0.5, stats[quick.name].buckets))


def test_quantile_estimates_within_buckets() -> None:
    counts: dict[str, Any] = {"0.01": 50, "0.1": 40, "1": 10}
    assert quantile(0.5, counts) == pytest.approx(0.01)
    assert 0.01 < quantile(0.9, counts) <= 0.1  # type: ignore[operator]
    # interpolated inside the (0.5, 1] bucket, as histogram_quantile does
    assert quantile(0.99, counts) == pytest.approx(0.5 + 0.5 * 0.9)
    assert quantile(0.5, {}) is None
    with pytest.raises(ValueError, match="q must be"):
        quantile(1.5, counts)


async def test_a_page_of_events_costs_a_few_round_trips_not_one_per_event(
    settings: Settings, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redis.asyncio.connection import AbstractConnection

    async with Emitter(ALL, settings) as emitter:
        for n in range(30):
            emitter.emit("order_placed", n)
    await redis.ping()  # connected: the handshake (HELLO, CLIENT SETINFO...) is not the page's
    sends = 0
    original = AbstractConnection.send_packed_command

    async def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        nonlocal sends
        sends += 1
        await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    page = await recent_events(redis, settings, limit=20)
    assert len(page.items) == 20 and all(len(event.jobs) == 2 for event in page.items)  # quick and flaky
    assert sends <= 6, f"{sends} round trips for a page of 20 events"
