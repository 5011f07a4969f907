"""Listeners run by worker processes in tests/test_processes.py (importable by the children)."""

from __future__ import annotations

import os

from children import push as _push
from redis import asyncio as aioredis

from taskemit import listener, worker_settings


@listener("proc_event")
async def record_call(n: int, **kwargs: object) -> None:
    await _push("proc:calls", f"{n}:{os.getpid()}")


@listener("proc_crash")
async def crash_first_time() -> None:
    client = aioredis.Redis.from_url(os.environ["TASKEMIT_REDIS_URL"])
    try:
        first = await client.incr("proc:crashes") == 1
    finally:
        await client.aclose()
    if first:
        os._exit(3)  # the whole worker process dies, as on a segfault or OOM kill
    await _push("proc:calls", f"crash-survived:{os.getpid()}")


WorkerSettings = worker_settings(listeners=[record_call, crash_first_time])
