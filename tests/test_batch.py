"""What one claim (engine/batch.py, claim.lua) asks of Redis: it scans a listener's leased and
delayed sets only when their earliest entry is due, and still takes back a lease that ran out.

Observed with MONITOR (every command a script runs is listed there), not with timings."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis as sync_redis
from redis import asyncio as aioredis

from taskemit import Emitter, listener
from taskemit.engine.batch import JobStore, Route
from taskemit.settings import Settings
from taskemit.store.codec import get_codec


@listener("batch_ping")
async def ping(n: int) -> None:
    """Never run here: the test claims its jobs itself."""


@pytest.fixture
def settings(taskemit_settings: Settings) -> Settings:
    return taskemit_settings.model_copy(update={"drain_on_exit": False})


@contextmanager
def monitored(url: str) -> Iterator[list[list[str]]]:
    """The commands Redis runs inside the block (each as its words), from MONITOR in a thread."""
    seen: list[list[str]] = []
    marker = f"end-of-monitor-{time.time()}"
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    monitor = client.monitor()
    monitor.__enter__()
    ready = threading.Event()

    def listen() -> None:
        ready.set()
        for entry in monitor.listen():
            words = str(entry["command"]).split()
            if marker in entry["command"]:
                return
            seen.append([word.strip('"') for word in words])

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait(5)
    time.sleep(0.1)  # MONITOR is on before the block's first command
    try:
        yield seen
    finally:
        client.echo(marker)
        thread.join(10)
        monitor.__exit__(None, None, None)
        client.close()


async def _exchange(store: JobStore, limit: int, url: str) -> tuple[Any, list[list[str]]]:
    with monitored(url) as seen:
        batch = await store.exchange([], limit)
    return batch, seen


def _scans(seen: list[list[str]], key: str) -> list[list[str]]:
    return [words for words in seen if words[0].upper() == "ZRANGEBYSCORE" and words[1] == key]


async def test_a_claim_scans_leased_and_delayed_sets_only_when_something_is_due(
    settings: Settings, redis: aioredis.Redis
) -> None:
    route = Route.of(ping, settings)
    async with Emitter([ping], settings) as emitter:
        for n in range(3):
            emitter.emit("batch_ping", n=n)
    store = JobStore(redis, settings, get_codec("json"), [route], "A")
    await store.load_scripts()
    url = settings.redis_url

    # two jobs held (leases run out a lease_ttl from now), one ready, and a job delayed for a minute
    first, _ = await _exchange(store, 2, url)
    assert len(first.claimed) == 2
    delayed_until = time.time() + 60
    await redis.zadd(route.delayed, {"not-yet": delayed_until * 1000})

    # nothing held or delayed is due: neither set is scanned; the claim takes the ready job
    batch, seen = await _exchange(store, 10, url)
    assert len(batch.claimed) == 1
    assert seen, "MONITOR saw the claim"
    assert _scans(seen, route.leased) == [] and _scans(seen, route.delayed) == []
    # and it still reports when work is next due: the first lease that runs out
    lease_end = min(await redis.zrange(route.leased, 0, 0, withscores=True), key=lambda item: item[1])[1]
    assert batch.next_due == pytest.approx(lease_end / 1000, abs=0.001)
    assert batch.next_due < delayed_until

    # a lease that ran out (its worker stopped): its set is scanned, and the job is claimed again
    lost = first.claimed[0].job_id
    await redis.delete(settings.keys.in_progress(lost))
    await redis.zadd(route.leased, {lost: time.time() * 1000 - 1})
    again, seen = await _exchange(store, 10, url)
    assert [claim.job_id for claim in again.claimed] == [lost]
    assert again.claimed[0].job_try == 2  # the stopped worker's try counts
    assert len(_scans(seen, route.leased)) == 1 and _scans(seen, route.delayed) == []

    # a delayed job whose time came: its set is scanned and the job moves to the ready set
    await redis.zadd(route.delayed, {"not-yet": time.time() * 1000 - 1})
    _, seen = await _exchange(store, 0, url)
    assert len(_scans(seen, route.delayed)) == 1 and _scans(seen, route.leased) == []
    assert await redis.zscore(route.ready, "not-yet") is not None
    assert await redis.zcard(route.delayed) == 0


@listener("batch_ping", name="batch:pong")
async def pong(n: int) -> None:
    """Never run here, like ping."""


async def test_a_claim_takes_an_even_share_of_each_listener_so_an_events_jobs_go_together(
    settings: Settings, redis: aioredis.Redis
) -> None:
    async with Emitter([ping, pong], settings) as emitter:
        for n in range(10):
            await emitter.publish("batch_ping", n)
    store = JobStore(redis, settings, get_codec("json"), [Route.of(ping, settings), Route.of(pong, settings)], "A")
    await store.load_scripts()
    first = (await store.exchange([], 6)).claimed
    by_listener = {route: sorted(c.payload for c in first if c.route == route) for route in (0, 1)}
    assert len(by_listener[0]) == len(by_listener[1]) == 3
    events = {route: sorted(c.job_id.rsplit(".", 1)[0] for c in first if c.route == route) for route in (0, 1)}
    assert events[0] == events[1]  # the same three events' jobs of both listeners
    # what one listener leaves, the other takes
    await redis.delete(Route.of(ping, settings).ready)
    rest = (await store.exchange([], 10)).claimed
    assert len(rest) == 7 and {c.route for c in rest} == {1}
