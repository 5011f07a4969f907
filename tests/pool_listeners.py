"""Two services' listeners for tests/test_engine_processes.py (importable by the child processes).

Both listen to ``order_placed``; each service's worker runs only its own listener. Every run
is recorded in Redis with the pid that ran it.
"""

from __future__ import annotations

import asyncio
import os

from children import push as _push

from taskemit import Attempt, listener, worker_settings


@listener("order_placed", name="billing.charge", queue="billing")
async def charge(order: int) -> None:
    await _push("runs:charge", f"{order}:{os.getpid()}")


@listener("order_placed", name="shipping.pack")
async def pack(order: int) -> None:
    await _push("runs:pack", f"{order}:{os.getpid()}")


Billing = worker_settings(listeners=[charge])
Shipping = worker_settings(listeners=[pack])
Both = worker_settings(listeners=[charge, pack])


@listener("nap", name="ops.nap", max_tries=1)
async def nap(seconds: float, attempt: Attempt) -> None:
    """Records each start (attempt number and pid) and each finish."""
    await _push("runs:nap", f"{attempt.number}:{os.getpid()}")
    await asyncio.sleep(seconds)
    await _push("runs:nap-done", str(os.getpid()))


Napper = worker_settings(listeners=[nap])
