"""scale: do emit and status cost stay flat as the queue grows? taskemit only, no peers.

Two queue sizes side by side in one redis-server, each in a Redis database of its own (so
each has its own keyspace): SMALL jobs in db 1 and LARGE in db 2 (1,000 and 1,000,000;
1,000 and 500,000 with --quick). The queues are filled with no worker running, by the
producer's ``send_many`` with single-listener events ("ev1"), so the arq queue, listener
``d``'s ready set and the events index all hold N entries. Then, REPEATS times, each size
in turn (the order alternating, so a load change on the machine hits both alike):

- emit: a burst of BURST "ev1" events, ``emit`` in a loop and ``publish`` for the last one
  (the time covers every event being stored), in events/s;
- status: the mean time of one ``taskemit.monitor.event_status`` call over STATUS_CALLS
  events of that burst, awaited one after the other;
- stats: the mean time of what ``taskemit monitor stats`` reads (live workers, listener
  counters, queue depth by two ZCOUNTs) over STATS_CALLS calls;
- the Redis server's own time per emitted event and per status call (INFO commandstats,
  reset before each measurement): what the client-side times include besides round trips.

The small database is flushed and refilled before each of its bursts. The large one is
filled once, and each burst's jobs and events are deleted after it was measured, so it
stays at N. That matters: a Redis hash table (the keyspace, and the dict inside every
sorted set) doubles when its size reaches a power of two and then moves its entries over
incrementally, one bucket per command on it; until that is done (about a million commands
on a million-entry set) every lookup there costs 2-3x (measured: server time per emit
18 -> 45 us, per status call 6 -> 14 us, right after the sets passed 2**20 entries). The
large sizes sit past a finished resize (1M: sets of 2**19 < N + BURST < 2**20, keyspace
2N < 2**21; 500k: 2**18 < N + BURST < 2**19); 300k, the obvious quick size, is mid-resize.

Value: emit rate at the large size / at the small size, the median of the per-repeat
ratios (1.0 = flat; the target is >= 0.9). The detail has the other figures; the status
and stats ratios are small-size time / large-size time, so >= 0.9 means flat there too.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis import asyncio as aioredis

from benchmarks.compare.scenarios.common import QUEUE, Context
from benchmarks.compare.systems import taskemit as adapter
from benchmarks.compare.systems.base import System
from taskemit.emit.registry import Registry
from taskemit.monitor import event_status, live_workers, read_listener_stats

NAME = "scale"
TITLE = "scale: emit and status cost with 1k vs 1M jobs queued (500k with --quick); taskemit only, no peers"
UNIT = "x (emit/s large/small)"
HIGHER_IS_BETTER = True
SYSTEMS = ("taskemit",)

FANOUT = 1  # "ev1": one listener per event
EVENT = adapter.EVENTS[FANOUT]
LISTENERS = Registry(adapter.LISTENERS).for_event(EVENT)  # their ready sets hold the jobs
BURST = 20_000  # events per timed emit burst
STATUS_CALLS = 500
STATS_CALLS = 200
SMALL_DB, LARGE_DB = 1, 2
STATUS_COMMANDS = ("hgetall", "exists", "zscore")  # what event_status sends for a finished-or-queued job


def sizes(quick: bool) -> tuple[int, int]:
    return (1_000, 500_000) if quick else (1_000, 1_000_000)


def repeats(quick: bool) -> int:
    return 3 if quick else 5


def rounds(quick: bool) -> int:
    return 1


def _db_url(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


async def _server_usec(redis: aioredis.Redis, commands: tuple[str, ...]) -> float:
    """Microseconds the server spent in ``commands`` since the last CONFIG RESETSTAT."""
    stats = await redis.info("commandstats")
    return sum(float(stats.get(f"cmdstat_{name}", {}).get("usec", 0)) for name in commands)


class _Size:
    """One queue size: its database, its client, the figures of its bursts."""

    def __init__(self, ctx: Context, jobs: int, db: int) -> None:
        self.jobs = jobs
        self.url = _db_url(ctx.url, db)
        self.redis: aioredis.Redis = aioredis.Redis.from_url(self.url)
        self.settings = adapter._settings(self.url, QUEUE)
        self.bursts: list[dict[str, float]] = []
        self.fill_s = 0.0

    async def fill(self, system: System) -> None:
        await self.redis.flushdb()
        start = time.perf_counter()
        await system.fill(self.url, QUEUE, self.jobs, FANOUT)
        self.fill_s = time.perf_counter() - start
        queued = int(await self.redis.zcard(self.settings.queue_key))
        if queued < self.jobs:
            raise RuntimeError(f"the fill stored {queued} of {self.jobs} jobs")

    async def burst(self, system: System) -> int:
        """One timed burst, then status and stats reads on what it stored; returns its first ms."""
        redis, settings = self.redis, self.settings
        await asyncio.sleep(0.002)  # no job of the fill shares the burst's first millisecond
        first_ms = int(time.time() * 1000)
        await redis.config_resetstat()
        seconds = await system.emit_loop(self.url, QUEUE, BURST * FANOUT, FANOUT)
        server_emit_us = await _server_usec(redis, ("evalsha", "eval")) / BURST
        # the burst's events are the newest in the index; sample them evenly
        newest = [m.decode() for m in await redis.zrevrange(settings.keys.events, 0, BURST - 1)]
        sample = newest[:: max(1, len(newest) // STATUS_CALLS)][:STATUS_CALLS]
        await redis.config_resetstat()
        start = time.perf_counter()
        for event_uuid in sample:
            found = await event_status(redis, settings, event_uuid)
            if found is None or found.event_id != EVENT:
                raise RuntimeError(f"event {event_uuid} has no status record")
        status_s = (time.perf_counter() - start) / len(sample)
        server_status_us = await _server_usec(redis, STATUS_COMMANDS) / len(sample)
        start = time.perf_counter()
        for _ in range(STATS_CALLS):
            await _stats_read(redis, settings)
        stats_s = (time.perf_counter() - start) / STATS_CALLS
        self.bursts.append(
            {
                "emit_per_s": BURST / seconds,
                "status_us": status_s * 1e6,
                "stats_us": stats_s * 1e6,
                "server_emit_us": server_emit_us,
                "server_status_us": server_status_us,
            }
        )
        return first_ms

    async def remove_since(self, first_ms: int) -> None:
        """Delete the jobs and events stored from ``first_ms`` on (a burst), so the queue is N again."""
        redis, space, queue = self.redis, self.settings.keys, self.settings.queue_key
        job_ids = [m.decode() for m in await redis.zrangebyscore(queue, first_ms, "+inf")]
        events = [m.decode() for m in await redis.zrangebyscore(space.events, first_ms, "+inf")]
        keys = [space.job(job_id) for job_id in job_ids] + [space.event(uuid) for uuid in events]
        async with redis.pipeline(transaction=False) as pipe:
            for first in range(0, len(keys), 5000):
                pipe.delete(*keys[first : first + 5000])
            ready = [space.ready(queue, item.name) for item in LISTENERS]
            for index in (queue, *ready, space.events, space.events_by_id(EVENT)):
                pipe.zremrangebyscore(index, first_ms, "+inf")
            await pipe.execute()
        queued = int(await redis.zcard(queue))
        if queued != self.jobs:
            raise RuntimeError(f"{queued} jobs queued after removing a burst, not {self.jobs}")

    async def summary(self) -> dict[str, Any]:
        memory = await self.redis.info("memory")
        keys = int(await self.redis.dbsize())
        median = {key: statistics.median(b[key] for b in self.bursts) for key in self.bursts[0]}
        return {
            "jobs": self.jobs,
            **median,
            "bursts": self.bursts,
            "fill_s": self.fill_s,
            "fill_jobs_per_s": self.jobs / self.fill_s,
            "keys_at_end": keys,
            "redis_used_mb_both_dbs": int(memory["used_memory"]) / 1e6,
        }


async def _stats_read(redis: aioredis.Redis, settings: Any) -> None:
    """What ``taskemit monitor stats`` reads from Redis."""
    now_ms = time.time() * 1000
    await live_workers(redis, settings.queue_name, space=settings.keys)
    await read_listener_stats(redis, space=settings.keys)
    await redis.zcount(settings.queue_key, "-inf", now_ms)
    await redis.zcount(settings.queue_key, f"({now_ms}", "+inf")


def _short(jobs: int) -> str:
    return f"{jobs // 1_000_000}M" if jobs % 1_000_000 == 0 else f"{jobs // 1000}k"


async def run(ctx: Context, system: System) -> dict[str, Any]:
    small_jobs, large_jobs = sizes(ctx.quick)
    small = _Size(ctx, small_jobs, SMALL_DB)
    large = _Size(ctx, large_jobs, LARGE_DB)
    try:
        await large.fill(system)
        ratios = []
        for repeat in range(repeats(ctx.quick)):
            await small.fill(system)  # afresh: the previous burst added BURST jobs
            order = (small, large) if repeat % 2 == 0 else (large, small)
            for size in order:
                first_ms = await size.burst(system)
                if size is large:
                    await large.remove_since(first_ms)
            ratios.append(large.bursts[-1]["emit_per_s"] / small.bursts[-1]["emit_per_s"])
        s, g = await small.summary(), await large.summary()
    finally:
        await ctx.reset()  # give the memory back before the next scenario
        await small.redis.aclose()
        await large.redis.aclose()
    status_ratio = s["status_us"] / g["status_us"]
    stats_ratio = s["stats_us"] / g["stats_us"]
    detail = (
        f"{_short(small_jobs)} -> {_short(large_jobs)}: emit {s['emit_per_s']:,.0f} -> {g['emit_per_s']:,.0f} ev/s "
        f"(server {s['server_emit_us']:.0f} -> {g['server_emit_us']:.0f} us/ev); "
        f"status {s['status_us']:.0f} -> {g['status_us']:.0f} us/call ({status_ratio:.2f}x; "
        f"server {s['server_status_us']:.1f} -> {g['server_status_us']:.1f} us); "
        f"stats {s['stats_us']:.0f} -> {g['stats_us']:.0f} us/call ({stats_ratio:.2f}x)"
    )
    return {
        "value": statistics.median(ratios),
        "emit_ratios": ratios,
        "status_ratio": status_ratio,
        "stats_ratio": stats_ratio,
        "small": s,
        "large": g,
        "detail": detail,
    }
