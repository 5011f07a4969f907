"""Two services' listeners for tests/test_engine_processes.py (importable by the child processes).

Both listen to ``order_placed``; each service's worker runs only its own listener. Every run
is recorded in Redis with the pid that ran it.
"""

from __future__ import annotations

import os

from children import push as _push

from taskemit import listener, worker_settings


@listener("order_placed", name="billing.charge", queue="billing")
async def charge(order: int) -> None:
    await _push("runs:charge", f"{order}:{os.getpid()}")


@listener("order_placed", name="shipping.pack")
async def pack(order: int) -> None:
    await _push("runs:pack", f"{order}:{os.getpid()}")


Billing = worker_settings(listeners=[charge])
Shipping = worker_settings(listeners=[pack])
Both = worker_settings(listeners=[charge, pack])
