"""Listeners run by worker processes in tests/test_leases.py (importable by the children)."""

from __future__ import annotations

import asyncio
import os
import time

from children import push as _push

from taskemit import Attempt, listener, worker_settings


@listener("lease_slow", timeout=120)
async def slow(seconds: float, attempt: Attempt) -> None:
    """Records each start (pid, time and attempt number), then runs for ``seconds``."""
    await _push("lease:starts", f"{os.getpid()}:{time.time()}:{attempt.number}")
    await asyncio.sleep(seconds)
    await _push("lease:done", str(os.getpid()))


@listener("lease_quick")
async def quick(n: int) -> None:
    await _push("lease:quick", f"{n}:{os.getpid()}")


WorkerSettings = worker_settings(listeners=[slow, quick])
