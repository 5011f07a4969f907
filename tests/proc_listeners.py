"""Listeners run by worker processes in tests/test_processes.py (importable by the children)."""

from __future__ import annotations

import os

from children import push as _push
from redis import asyncio as aioredis

from taskemit import Attempt, Backoff, listener, worker_settings


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


# -- retries and dead letters under the stock arq worker (tests/test_processes.py) ---------------


@listener("proc_flaky", backoff=Backoff.fixed(0.2))
async def fails_once(attempt: Attempt) -> str:
    await _push("proc:flaky", str(attempt.number))
    if attempt.number == 1:
        raise ConnectionError("first try refused")
    return f"done on try {attempt.number}"


@listener("proc_doomed", max_tries=2, backoff=Backoff.fixed(0.2))
async def always_fails(attempt: Attempt) -> None:
    await _push("proc:doomed", str(attempt.number))
    raise LookupError(f"no row on try {attempt.number}")


Retrying = worker_settings(listeners=[fails_once, always_fails])


# -- a job that kills its worker on every try ------------------------------------------------------


@listener("proc_poison", max_tries=2)
async def kills_its_worker(attempt: Attempt) -> None:
    await _push("proc:poison", f"{attempt.number}:{os.getpid()}")
    os._exit(3)  # every try: the worker dies mid-listener; its lease runs out, the try still counts


Poison = worker_settings(listeners=[kills_its_worker])
