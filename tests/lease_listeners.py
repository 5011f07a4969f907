"""Listeners run by worker processes in tests/test_leases.py (importable by the children)."""

from __future__ import annotations

import asyncio
import os
import time

from redis import asyncio as aioredis

from taskemit import listener, worker_settings


async def _push(key: str, value: str) -> None:
    client = aioredis.Redis.from_url(os.environ["TASKEMIT_REDIS_URL"])
    try:
        await client.rpush(key, value)
    finally:
        await client.aclose()


@listener("lease_slow", timeout=120)
async def slow(seconds: float) -> None:
    """Records each start (pid and time), then runs for ``seconds``."""
    await _push("lease:starts", f"{os.getpid()}:{time.time()}")
    await asyncio.sleep(seconds)
    await _push("lease:done", str(os.getpid()))


@listener("lease_quick")
async def quick(n: int) -> None:
    await _push("lease:quick", f"{n}:{os.getpid()}")


WorkerSettings = worker_settings(listeners=[slow, quick])
