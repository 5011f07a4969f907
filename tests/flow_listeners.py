"""Listeners with flow control, run by worker processes in tests/test_flow_processes.py (importable
by the children). Each records when it started and ended in the test's Redis:
``<listener>:<key>:<n>:<pid>:<start>:<end>`` on the list ``flow:runs``, times in epoch seconds
(one machine, one clock)."""

from __future__ import annotations

import asyncio
import os
import time

from children import client

from taskemit import Attempt, Retry, listener, worker_settings

RUNS = "flow:runs"


async def record(name: str, key: object, n: int, started: float) -> None:
    await client().rpush(RUNS, f"{name}:{key}:{n}:{os.getpid()}:{started:.6f}:{time.time():.6f}")


@listener("conc", concurrency=3)
async def limited(n: int) -> None:
    started = time.time()
    await asyncio.sleep(0.02)
    await record("limited", "", n, started)


@listener("slots", concurrency=2)
async def slot(n: int) -> None:
    """Holds its slot for a minute in the worker that is to be killed (FLOW_HOLD=1), briefly elsewhere."""
    started = time.time()
    await client().rpush("flow:started", f"{n}:{os.getpid()}:{started:.6f}")
    await asyncio.sleep(60 if os.environ.get("FLOW_HOLD") else 0.02)
    await record("slot", "", n, started)


@listener("rated", rate="20/s")
async def rated(n: int) -> None:
    started = time.time()
    await record("rated", "", n, started)


@listener("ordered", ordered_by="key", backoff=None)
async def ordered(key: str, n: int, attempt: Attempt) -> None:
    started = time.time()
    await asyncio.sleep(0.005)
    if key == "k0" and n == 5 and attempt.number < 3:  # fails twice: holds its key through its retries
        await client().rpush(RUNS, f"ordered-failed:{key}:{n}:{os.getpid()}:{started:.6f}:{time.time():.6f}")
        raise Retry(after=0.1)
    await record("ordered", key, n, started)


@listener("backlog")
async def low(n: int) -> None:
    started = time.time()
    await asyncio.sleep(0.005)
    await record("low", "", n, started)


@listener("urgent", priority=10)
async def high(n: int) -> None:
    started = time.time()
    await record("high", "", n, started)


Limited = worker_settings(listeners=[limited])
Slots = worker_settings(listeners=[slot])
Rated = worker_settings(listeners=[rated])
Ordered = worker_settings(listeners=[ordered])
Prioritized = worker_settings(listeners=[low, high])
