"""The listener's side of the latency run: when each event's listener started (to Redis, batched)."""

from __future__ import annotations

import asyncio
import os
import time

from redis import asyncio as aioredis

KEY = "bench:outbox:started"
_pending: list[str] = []
_flusher: asyncio.Task[None] | None = None


def started(order: int) -> None:
    """Record ``order``'s start time (time.time()); written to Redis within milliseconds."""
    global _flusher
    _pending.append(f"{order} {time.time()!r}")
    if _flusher is None or _flusher.done():
        _flusher = asyncio.get_running_loop().create_task(_flush())


async def _flush() -> None:
    async with aioredis.Redis.from_url(os.environ["BENCH_REDIS_URL"]) as redis:
        while _pending:
            await asyncio.sleep(0.002)
            batch = _pending[:]
            del _pending[: len(batch)]
            await redis.rpush(KEY, *batch)
