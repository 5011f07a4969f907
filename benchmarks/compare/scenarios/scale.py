"""scale: do emit and status cost stay flat as the queue grows? taskemit only.

For each queue size N (1,000, then 1,000,000; 300,000 with --quick) and no worker running:
fill the queue with N single-listener jobs (the producer's ``send_many``, event "ev1", so
the arq queue, listener ``d``'s ready set and the events index all hold N entries), then

- emit: a burst of BURST "ev1" events, ``emit`` in a loop and ``publish`` for the last one
  (the time covers every event being stored), in events/s;
- status: the mean time of one ``taskemit.monitor.event_status`` call, over STATUS_CALLS
  events of that burst, one awaited call after the other;
- stats: the mean time of what ``taskemit monitor stats`` reads (live workers, listener
  counters, queue depth by two ZCOUNTs), over STATS_CALLS calls.

The small size is filled afresh before each of its REPEATS bursts (so its queue stays
small); the large one is filled once and takes its REPEATS bursts one after the other (each
adds BURST jobs, a few percent of N). Each figure is the median over the repeats.

Value: emit rate at the large size / at the small size (1.0 = flat; the target is >= 0.9).
The detail has every figure; status and stats ratios are likewise small-size time /
large-size time, so >= 0.9 means flat there too.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks.compare.scenarios.common import QUEUE, Context
from benchmarks.compare.systems.base import System
from benchmarks.compare.systems.taskemit import EVENTS, _settings
from taskemit.monitor import event_status, live_workers, read_listener_stats

NAME = "scale"
TITLE = "scale: emit and status cost with 1k vs 1M jobs queued (300k with --quick); taskemit only, no peers"
UNIT = "x (emit/s large/small)"
HIGHER_IS_BETTER = True
SYSTEMS = ("taskemit",)

FANOUT = 1  # "ev1": one listener per event
BURST = 20_000  # events per timed emit burst
REPEATS = 3  # bursts per size
STATUS_CALLS = 500
STATS_CALLS = 200


def sizes(quick: bool) -> tuple[int, int]:
    return (1_000, 300_000) if quick else (1_000, 1_000_000)


def rounds(quick: bool) -> int:
    return 1 if quick else 2


async def _burst(ctx: Context, system: System) -> dict[str, float]:
    """One timed burst, then status and stats reads on what it stored."""
    settings = _settings(ctx.url, QUEUE)
    space = settings.keys
    seconds = await system.emit_loop(ctx.url, QUEUE, BURST * FANOUT, FANOUT)
    # the burst's events are the newest in the index; sample them evenly
    newest = [m.decode() for m in await ctx.redis.zrevrange(space.events, 0, BURST - 1)]
    sample = newest[:: max(1, len(newest) // STATUS_CALLS)][:STATUS_CALLS]
    start = time.perf_counter()
    for event_uuid in sample:
        found = await event_status(ctx.redis, settings, event_uuid)
        if found is None or found.event_id != EVENTS[FANOUT]:
            raise RuntimeError(f"event {event_uuid} has no status record")
    status_s = (time.perf_counter() - start) / len(sample)
    start = time.perf_counter()
    for _ in range(STATS_CALLS):
        await _stats_read(ctx, settings)
    stats_s = (time.perf_counter() - start) / STATS_CALLS
    return {"emit_per_s": BURST / seconds, "status_us": status_s * 1e6, "stats_us": stats_s * 1e6}


async def _stats_read(ctx: Context, settings: Any) -> None:
    """What ``taskemit monitor stats`` reads from Redis."""
    now_ms = time.time() * 1000
    await live_workers(ctx.redis, settings.queue_name, space=settings.keys)
    await read_listener_stats(ctx.redis, space=settings.keys)
    await ctx.redis.zcount(settings.queue_key, "-inf", now_ms)
    await ctx.redis.zcount(settings.queue_key, f"({now_ms}", "+inf")


def _median(bursts: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(b[key] for b in bursts) for key in bursts[0]}


async def _size(ctx: Context, system: System, jobs: int, refill: bool) -> dict[str, Any]:
    settings = _settings(ctx.url, QUEUE)
    bursts = []
    fill_s = 0.0
    for repeat in range(REPEATS):
        if refill or repeat == 0:
            await ctx.reset()
            start = time.perf_counter()
            await system.fill(ctx.url, QUEUE, jobs, FANOUT)
            fill_s = time.perf_counter() - start
            queued = int(await ctx.redis.zcard(settings.queue_key))
            if queued < jobs:
                raise RuntimeError(f"the fill stored {queued} of {jobs} jobs")
        bursts.append(await _burst(ctx, system))
    memory = await ctx.redis.info("memory")
    return {
        "jobs": jobs,
        **_median(bursts),
        "bursts": bursts,
        "fill_s": fill_s,
        "fill_jobs_per_s": jobs / fill_s,
        "redis_used_mb": int(memory["used_memory"]) / 1e6,
    }


def _short(jobs: int) -> str:
    return f"{jobs // 1_000_000}M" if jobs % 1_000_000 == 0 else f"{jobs // 1000}k"


async def run(ctx: Context, system: System) -> dict[str, Any]:
    small_jobs, large_jobs = sizes(ctx.quick)
    small = await _size(ctx, system, small_jobs, refill=True)
    large = await _size(ctx, system, large_jobs, refill=False)
    await ctx.reset()  # give the memory back before the next scenario
    emit_ratio = large["emit_per_s"] / small["emit_per_s"]
    status_ratio = small["status_us"] / large["status_us"]
    stats_ratio = small["stats_us"] / large["stats_us"]
    sizes_text = f"{_short(small_jobs)} -> {_short(large_jobs)}"
    detail = (
        f"{sizes_text}: emit {small['emit_per_s']:,.0f} -> {large['emit_per_s']:,.0f} ev/s; "
        f"status {small['status_us']:.0f} -> {large['status_us']:.0f} us/call ({status_ratio:.2f}x); "
        f"stats {small['stats_us']:.0f} -> {large['stats_us']:.0f} us/call ({stats_ratio:.2f}x)"
    )
    return {
        "value": emit_ratio,
        "status_ratio": status_ratio,
        "stats_ratio": stats_ratio,
        "small": small,
        "large": large,
        "detail": detail,
    }
