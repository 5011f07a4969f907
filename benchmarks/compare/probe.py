"""What every benchmark task calls: count the job as done and record its start latency.

The same code runs in every system's worker process (taskiq's under a newer redis-py), so
completion and latency are detected identically for all. A task calls ``hit(stamp)`` first
thing; the probe adds 1 to ``bench:done`` and, when ``stamp`` is set, pushes
``now - stamp`` (seconds; the producer's ``time.time()`` at emit) to ``bench:latency``.
Writes are batched by one flusher task per process (woken by the first hit after a flush,
so an idle worker has no extra wake-ups) to keep the probe's own Redis traffic small.

Environment: ``BENCH_REDIS_URL``.
"""

from __future__ import annotations

import asyncio
import os
import time

from redis import asyncio as aioredis

DONE_KEY = "bench:done"
LATENCY_KEY = "bench:latency"
_FLUSH_AFTER = 0.002  # seconds: hits arriving meanwhile go in the same round trip

_count = 0
_latencies: list[float] = []
_wake: asyncio.Event | None = None
_flusher: asyncio.Task[None] | None = None


def hit(stamp: float = 0.0) -> None:
    """Record one started job; ``stamp`` is the producer's time.time() at emit (0: none)."""
    global _count, _wake, _flusher
    now = time.time()
    _count += 1
    if stamp:
        _latencies.append(now - stamp)
    if _flusher is None or _flusher.done():
        _wake = asyncio.Event()
        _flusher = asyncio.get_running_loop().create_task(_flush_forever(os.environ["BENCH_REDIS_URL"]))
    assert _wake is not None
    _wake.set()


async def _flush_forever(url: str) -> None:
    global _count, _latencies
    redis = aioredis.Redis.from_url(url)
    assert _wake is not None
    while True:
        await _wake.wait()
        _wake.clear()
        await asyncio.sleep(_FLUSH_AFTER)
        count, _count = _count, 0
        latencies, _latencies = _latencies, []
        async with redis.pipeline(transaction=False) as pipe:
            for first in range(0, len(latencies), 1000):
                pipe.rpush(LATENCY_KEY, *(f"{value:.6f}" for value in latencies[first : first + 1000]))
            pipe.incrby(DONE_KEY, count)
            await pipe.execute()
