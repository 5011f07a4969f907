"""Listeners for tests/test_soak_outage.py, imported by the worker processes it starts.

Each run appends "event:listener:pid:started" when it starts and "...:finished" when it ends, so
the test can count every (event, listener) pair, the duplicates, and how long a job interrupted
by a killed worker waited to run again.
"""

from __future__ import annotations

import asyncio
import os
import time

from children import client

from taskemit import listener, worker_settings


async def _run(name: str, order: int) -> None:
    started = time.time()
    await client().rpush("outage:started", f"{order}:{name}:{os.getpid()}:{started}")
    await asyncio.sleep(0.02)  # some I/O: jobs are running when a worker is killed
    await client().rpush("outage:done", f"{order}:{name}:{os.getpid()}:{started}:{time.time()}")


@listener("order_placed", name="outage.reserve")
async def reserve(order: int) -> None:
    await _run("reserve", order)


@listener("order_placed", name="outage.receipt")
async def receipt(order: int) -> None:
    await _run("receipt", order)


@listener("order_placed", name="outage.ledger")
async def ledger(order: int) -> None:
    await _run("ledger", order)


WorkerSettings = worker_settings(listeners=[reserve, receipt, ledger])
