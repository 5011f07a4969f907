"""Listeners for tests/test_soak.py, imported by the worker processes it starts."""

from __future__ import annotations

import asyncio
import os

from redis import asyncio as aioredis

from taskemit import listener, worker_settings

_client: aioredis.Redis | None = None


def _redis() -> aioredis.Redis:
    global _client
    if _client is None:
        _client = aioredis.Redis.from_url(os.environ["TASKEMIT_REDIS_URL"])
    return _client


@listener("order_placed")
async def reserve_stock(order: int) -> None:
    await asyncio.sleep(0.01)  # some I/O
    await _redis().sadd("soak:reserved", order)


@listener("order_placed")
async def send_receipt(order: int) -> None:
    await asyncio.sleep(0.01)
    await _redis().sadd("soak:receipts", order)


WorkerSettings = worker_settings(listeners=[reserve_stock, send_receipt])
