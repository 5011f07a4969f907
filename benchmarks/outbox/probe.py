"""The listener's side of the latency run: when each event's listener started (to Redis, batched)."""

from __future__ import annotations

import asyncio
import os
import time

from redis import asyncio as aioredis

KEY = "bench:outbox:started"
_pending: list[str] = []
_wake: asyncio.Event | None = None
_flusher: asyncio.Task[None] | None = None


def started(order: int) -> None:
    """Record ``order``'s start time (time.time()); written to Redis within milliseconds."""
    global _flusher, _wake
    _pending.append(f"{order} {time.time()!r}")
    if _flusher is None:
        _wake = asyncio.Event()
        _flusher = asyncio.get_running_loop().create_task(_flush_forever())
    assert _wake is not None
    _wake.set()


async def _flush_forever() -> None:
    assert _wake is not None
    async with aioredis.Redis.from_url(os.environ["BENCH_REDIS_URL"]) as redis:
        while True:
            await _wake.wait()
            _wake.clear()
            await asyncio.sleep(0.002)  # what comes meanwhile goes in the same round trip
            batch = _pending[:]
            del _pending[: len(batch)]
            if batch:
                await redis.rpush(KEY, *batch)
