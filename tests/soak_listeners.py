"""Listeners for tests/test_soak.py, imported by the worker processes it starts."""

from __future__ import annotations

import asyncio

from children import client

from taskemit import listener, worker_settings


@listener("order_placed")
async def reserve_stock(order: int) -> None:
    await asyncio.sleep(0.01)  # some I/O
    await client().sadd("soak:reserved", order)


@listener("order_placed")
async def send_receipt(order: int) -> None:
    await asyncio.sleep(0.01)
    await client().sadd("soak:receipts", order)


WorkerSettings = worker_settings(listeners=[reserve_stock, send_receipt])
